"""site.yml `nginx:`: install nginx from the Debian package, or build it from checked source tarballs.

`nginx.source` names the nginx and nginx-rtmp-module releases (by version and
sha256; a URL or a file beside site.yml) and which inventory host builds them.
Downloading and checking the tarballs is pi_stream.nginx_source's job, not this module's.
"""

from __future__ import annotations

import re
from pathlib import Path

from pi_stream.nginx_source import (
    DEFAULT_NGINX_SOURCE,
    NGINX_RELEASE_URL,
    RTMP_MODULE_RELEASE_URL,
    NginxSource,
    SourceArchive,
)
from pi_stream.site.fields import Fields, text_problem
from pi_stream.site.inventory import BUILDERS_GROUP, Host

VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+~]{0,40}$")
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
ARCHIVE_URL_RE = re.compile(r"^https?://[^/\s]+/\S+$")


def parse_nginx(section: Fields, directory: Path, build_hosts: tuple[Host, ...]) -> tuple[str, NginxSource]:
    """`nginx: {install_method: package|source, source: {...}}` -> (install method, source)."""
    install_method = section.choice("install_method", ("package", "source"), "package")
    nginx_source = parse_nginx_source(section.sub("source"), directory, build_hosts)
    section.done()
    return install_method, nginx_source


def parse_nginx_source(section: Fields, directory: Path, build_hosts: tuple[Host, ...]) -> NginxSource:
    """`nginx.source: {nginx: {version, url|file, sha256}, rtmp_module: {...}, rtmp_module_link, build_host}`."""
    nginx = parse_source_archive(section.sub("nginx"), DEFAULT_NGINX_SOURCE.nginx, NGINX_RELEASE_URL, directory)
    module = parse_source_archive(section.sub("rtmp_module"), DEFAULT_NGINX_SOURCE.rtmp_module, RTMP_MODULE_RELEASE_URL, directory)
    link = section.choice("rtmp_module_link", ("static", "dynamic"), "static")
    build_host = parse_build_host(section, build_hosts)
    section.done()
    return NginxSource(nginx=nginx, rtmp_module=module, rtmp_module_link=link, build_host=build_host)


def parse_build_host(section: Fields, build_hosts: tuple[Host, ...]) -> str:
    """`build_host`: an inventory host of the builders group, or "" (each Pi builds for itself)."""
    build_host = section.string("build_host", "")
    if build_host and build_host not in {h.name for h in build_hosts}:
        known = ", ".join(h.name for h in build_hosts) or "none yet"
        section.error(
            "build_host",
            f"{build_host!r} is not in the inventory group {BUILDERS_GROUP} (known: {known}); add it there: "
            f"`all: {{children: {{{BUILDERS_GROUP}: {{hosts: {{{build_host}: {{ansible_host: ...}}}}}}}}}}`",
        )
        return ""
    return build_host


def parse_source_archive(fields: Fields, default: SourceArchive, url_template: str, directory: Path) -> SourceArchive:
    """A tarball by version and sha256, from `url` (default: the upstream release URL of the version) or a local `file`."""
    given = {k for k in ("version", "url", "file", "sha256") if fields.data.get(k) is not None}
    version = fields.string("version", default.version, VERSION_RE, "use the release's version, like 1.26.3")
    sha256 = fields.string("sha256", "", SHA256_RE, "64 hexadecimal digits, as `sha256sum` prints").lower()
    url = fields.string("url", "")
    file_name = fields.string("file", "")
    fields.done()
    if not given:
        return default
    if given == {"sha256"}:
        fields.error("sha256", "give the version (and url or file) this checksum belongs to")
        return default
    if not sha256:
        if "sha256" not in given:
            fields.error("sha256", "required with a version, url or file of your own: nothing is built from an unchecked download")
        return default
    if url and file_name:
        fields.error("url", "give either url or file, not both")
        return default
    if file_name:
        path = Path(file_name).expanduser()
        path = path if path.is_absolute() else directory / path
        if not path.is_file():
            fields.error("file", f"{path} does not exist (a path relative to the site directory, or absolute)")
            return default
        return SourceArchive(field=fields.path, version=version, sha256=sha256, file=path.resolve())
    if url and text_problem(url, ARCHIVE_URL_RE):
        fields.error("url", f"{url!r} is not an http:// or https:// URL of a file")
        return default
    return SourceArchive(field=fields.path, version=version, sha256=sha256, url=url or url_template.format(version=version))
