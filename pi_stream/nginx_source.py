"""nginx with nginx-rtmp-module from source: the checksummed sources, the configure flags, and the key of a build.

The role `nginx_rtmp` (tasks/install-source.yml) builds a .deb named after
`inputs_key()`: the same sources, flags and build files give the same package
version, so a re-run finds it installed (or cached on the controller) and
builds nothing; any change to an input gives a new version and one new build.

Sources are downloaded here, on the controller, and checked against their
sha256 before Ansible starts: a wrong checksum stops the deploy with the field
to fix, before anything on a Pi is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pi_stream import share
from pi_stream.errors import PiStreamError, SiteError

# The distribution's layout, so the roles and every rendered path work the same
# on either install method. The mail, FastCGI, uwsgi, SCGI and memcached
# modules are left out (mail is only built when asked for).
CONFIGURE_FLAGS = (
    "--prefix=/usr/share/nginx",
    "--sbin-path=/usr/sbin/nginx",
    "--modules-path=/usr/lib/nginx/modules",
    "--conf-path=/etc/nginx/nginx.conf",
    "--error-log-path=/var/log/nginx/error.log",
    "--http-log-path=/var/log/nginx/access.log",
    "--pid-path=/run/nginx.pid",
    "--lock-path=/run/nginx.lock",
    "--http-client-body-temp-path=/var/lib/nginx/body",
    "--http-proxy-temp-path=/var/lib/nginx/proxy",
    "--user=www-data",
    "--group=www-data",
    "--with-compat",
    "--with-threads",
    "--with-file-aio",
    "--with-pcre-jit",
    "--with-http_ssl_module",
    "--with-http_v2_module",
    "--with-http_gzip_static_module",
    "--with-http_auth_request_module",
    "--with-http_secure_link_module",
    "--with-http_realip_module",
    "--with-http_stub_status_module",
    "--without-http_fastcgi_module",
    "--without-http_uwsgi_module",
    "--without-http_scgi_module",
    "--without-http_memcached_module",
)

BUILD_FILES_DIR = share.ROLES / "nginx_rtmp" / "files" / "source-build"
PACKAGE_NAME = "pi-stream-nginx"
# Bumped by hand only if the package's layout changes in a way the build files do not show.
RECIPE_REVISION = 1
DOWNLOAD_TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class SourceArchive:
    """One tarball: from a URL, or a file beside site.yml; always with its sha256."""

    field: str  # where it is set in site.yml, for messages: nginx.source.nginx
    version: str
    sha256: str
    url: str = ""
    file: Path | None = None

    @property
    def filename(self) -> str:
        if self.file is not None:
            return self.file.name
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class NginxSource:
    nginx: SourceArchive
    rtmp_module: SourceArchive
    rtmp_module_link: str  # static | dynamic
    build_host: str = ""  # an inventory host of the pi_stream_builders group; "" = each Pi builds for itself


# Where a version given without a url is downloaded from.
NGINX_RELEASE_URL = "https://nginx.org/download/nginx-{version}.tar.gz"
RTMP_MODULE_RELEASE_URL = "https://github.com/arut/nginx-rtmp-module/archive/refs/tags/v{version}.tar.gz"

# The defaults come from Debian's archive, which any Pi reaches and whose
# checksums were checked here. Debian's nginx_1.26.3.orig.tar.gz is nginx.org's
# nginx-1.26.3.tar.gz itself (Debian ships it with upstream's signature,
# nginx_1.26.3.orig.tar.gz.asc); the module's is the 1.2.2 release repacked
# for Debian's free-software rules (+dfsg).
DEFAULT_NGINX_SOURCE = NginxSource(
    nginx=SourceArchive(
        field="nginx.source.nginx",
        version="1.26.3",
        sha256="69ee2b237744036e61d24b836668aad3040dda461fe6f570f1787eab570c75aa",
        url="https://deb.debian.org/debian/pool/main/n/nginx/nginx_1.26.3.orig.tar.gz",
    ),
    rtmp_module=SourceArchive(
        field="nginx.source.rtmp_module",
        version="1.2.2",
        sha256="6531e5ed75b01dfe786e08e0eb8ffd664b6f271f3e57223fe59dba965fcefd84",
        url="https://deb.debian.org/debian/pool/main/libn/libnginx-mod-rtmp/libnginx-mod-rtmp_1.2.2+dfsg.orig.tar.xz",
    ),
    rtmp_module_link="static",
)


def cache_root() -> Path:
    """The controller's cache: downloaded sources and built packages, shared by every site."""
    configured = os.environ.get("PI_STREAM_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pi-stream"


def archive_path(archive: SourceArchive, root: Path | None = None) -> Path:
    """Where the checked tarball lives on the controller: named by its checksum, so a new version never reuses an old file."""
    return (root or cache_root()) / "sources" / archive.sha256 / archive.filename


def build_files() -> list[Path]:
    return sorted(p for p in BUILD_FILES_DIR.iterdir() if p.is_file())


def inputs_key(source: NginxSource) -> str:
    """sha256 over everything that decides the package's contents (the target's release and architecture are added by the role)."""
    inputs = {
        "recipe": RECIPE_REVISION,
        "nginx": [source.nginx.version, source.nginx.sha256],
        "rtmp_module": [source.rtmp_module.version, source.rtmp_module.sha256],
        "link": source.rtmp_module_link,
        "flags": list(CONFIGURE_FLAGS),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in build_files()},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def role_vars(source: NginxSource) -> dict:
    """What the nginx_rtmp role needs for the source method (the sources themselves are found in the cache by checksum)."""

    def archive(a: SourceArchive) -> dict:
        return {"version": a.version, "sha256": a.sha256, "filename": a.filename}

    return {
        "nginx": archive(source.nginx),
        "rtmp_module": archive(source.rtmp_module),
        "rtmp_module_link": source.rtmp_module_link,
        "configure_flags": list(CONFIGURE_FLAGS),
        "inputs_key": inputs_key(source),
        "build_host": source.build_host,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SourceFetchError(PiStreamError):
    """A source could not be downloaded or read (network, missing file): nothing was changed on any host."""


def mismatch(site_file: str, archive: SourceArchive, where: str, actual: str) -> SiteError:
    return SiteError(
        [
            (
                site_file,
                f"{archive.field}.sha256",
                f"{where} has sha256 {actual}, not {archive.sha256}: nothing was built or changed. "
                "If you changed the version, set sha256 to the one its release page publishes "
                "(or `sha256sum` of a tarball you trust); otherwise the download is not the file you meant.",
            )
        ]
    )


def fetch(
    archive: SourceArchive,
    site_file: str,
    root: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Path:
    """The tarball in the cache, downloaded or copied once and checked against its sha256 every time it is used."""
    import requests

    target = archive_path(archive, root)
    if target.exists():
        actual = sha256_of(target)
        if actual == archive.sha256:
            return target
        target.unlink()  # a cache file damaged since: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    partial = Path(partial_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if archive.file is not None:
                progress(f"checking {archive.file}")
                try:
                    with open(archive.file, "rb") as src:
                        shutil.copyfileobj(src, out)
                except OSError as exc:
                    raise SourceFetchError(f"{site_file}: {archive.field}.file: cannot read {archive.file}: {exc.strerror}") from exc
                where = str(archive.file)
            else:
                progress(f"downloading {archive.url}")
                try:
                    with requests.get(archive.url, stream=True, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                        response.raise_for_status()
                        for chunk in response.iter_content(CHUNK_BYTES):
                            out.write(chunk)
                except requests.RequestException as exc:
                    raise SourceFetchError(
                        f"{site_file}: {archive.field}.url: cannot download {archive.url}: {exc}; nothing was changed. "
                        "Check the URL and this machine's network, or download it yourself and give `file:` instead."
                    ) from exc
                where = f"the file downloaded from {archive.url}"
        actual = sha256_of(partial)
        if actual != archive.sha256:
            raise mismatch(site_file, archive, where, actual)
        partial.replace(target)
        return target
    finally:
        partial.unlink(missing_ok=True)


def fetch_sources(
    source: NginxSource, site_file: str, root: Path | None = None, progress: Callable[[str], None] = lambda line: None
) -> list[Path]:
    """Both tarballs, checked; every problem at once when both are wrong."""
    return fetch_archives((source.nginx, source.rtmp_module), site_file, root, progress)


def fetch_archives(
    archives: Iterable[SourceArchive], site_file: str, root: Path | None = None, progress: Callable[[str], None] = lambda line: None
) -> list[Path]:
    """Each tarball in the cache, checked; every problem at once (one SiteError) when several are wrong."""
    paths, problems = [], []
    for archive in archives:
        try:
            paths.append(fetch(archive, site_file, root, progress))
        except SiteError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SiteError(problems)
    return paths
