"""nginx from source, on the controller: site.yml fields, checked downloads, and the key that names a build."""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from pi_stream import nginx_source
from pi_stream.errors import ExitStatus, SiteError
from pi_stream.nginx_source import DEFAULT_NGINX_SOURCE, SourceFetchError, fetch, fetch_sources, inputs_key
from pi_stream.site import load_site
from tests.conftest import write_site

TARBALL = b"not really nginx, but bytes with a known checksum\n"
TARBALL_SHA = hashlib.sha256(TARBALL).hexdigest()


def site_with(tmp_path: Path, nginx: dict, hosts: dict | None = None) -> Path:
    return write_site(tmp_path / "site", {"name": "s", "cameras": [{"name": "cam", "source": {"type": "testsrc"}}], "nginx": nginx}, hosts)


def problems_of(directory: Path) -> dict[str, str]:
    with pytest.raises(SiteError) as caught:
        load_site(directory)
    return {field: message for _, field, message in caught.value.problems}


def test_defaults_are_the_checked_debian_archive_tarballs(tmp_path):
    site = load_site(site_with(tmp_path, {"install_method": "source"}))
    assert site.nginx_source == DEFAULT_NGINX_SOURCE
    assert site.nginx_source.nginx.url.startswith("https://deb.debian.org/debian/pool/main/n/nginx/nginx_1.26.3")
    assert site.nginx_source.rtmp_module_link == "static"


def test_a_version_of_your_own_needs_its_checksum_and_gets_the_upstream_url(tmp_path):
    problems = problems_of(site_with(tmp_path, {"source": {"nginx": {"version": "1.28.0"}}}))
    assert "unchecked download" in problems["nginx.source.nginx.sha256"]

    good = site_with(tmp_path, {"source": {"nginx": {"version": "1.28.0", "sha256": "A" * 64}}})
    nginx = load_site(good).nginx_source.nginx
    assert (nginx.url, nginx.sha256) == ("https://nginx.org/download/nginx-1.28.0.tar.gz", "a" * 64)
    module = load_site(
        site_with(tmp_path, {"source": {"rtmp_module": {"version": "1.2.3", "sha256": "b" * 64}}})
    ).nginx_source.rtmp_module
    assert module.url == "https://github.com/arut/nginx-rtmp-module/archive/refs/tags/v1.2.3.tar.gz"


def test_every_mistake_in_the_source_section_is_reported_at_once(tmp_path):
    problems = problems_of(
        site_with(
            tmp_path,
            {
                "source": {
                    "nginx": {"version": "1.26.3", "sha256": "xyz", "url": "ftp://example.org/n.tgz"},
                    "rtmp_module": {"version": "1.2.2", "sha256": "c" * 64, "url": "https://e.org/a.tgz", "file": "m.tgz"},
                    "rtmp_module_link": "both",
                    "build_host": "builder",
                    "flags": [],
                }
            },
        )
    )
    assert "64 hexadecimal digits" in problems["nginx.source.nginx.sha256"]
    assert "not both" in problems["nginx.source.rtmp_module.url"]
    assert "static, dynamic" in problems["nginx.source.rtmp_module_link"]
    assert "pi_stream_builders" in problems["nginx.source.build_host"]
    assert "unknown key" in problems["nginx.source.flags"]


def test_a_local_file_is_found_beside_site_yml(tmp_path):
    directory = site_with(tmp_path, {"source": {"nginx": {"version": "1.26.3", "file": "nginx.tar.gz", "sha256": TARBALL_SHA}}})
    assert "does not exist" in problems_of(directory)["nginx.source.nginx.file"]
    (directory / "nginx.tar.gz").write_bytes(TARBALL)
    nginx = load_site(directory).nginx_source.nginx
    assert nginx.file == (directory / "nginx.tar.gz").resolve() and nginx.filename == "nginx.tar.gz"


def test_build_hosts_come_from_their_own_inventory_group(tmp_path):
    directory = site_with(tmp_path, {"install_method": "source", "source": {"build_host": "builder"}})
    inventory = {
        "all": {
            "hosts": {"pi1": {"ansible_host": "192.0.2.10"}},
            "children": {"pi_stream_builders": {"hosts": {"builder": {"ansible_host": "192.0.2.99"}}}},
        }
    }
    import yaml

    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    site = load_site(directory)
    assert [h.name for h in site.hosts] == ["pi1"], "a build host is not provisioned as an appliance"
    assert [h.name for h in site.build_hosts] == ["builder"] and site.nginx_source.build_host == "builder"


def test_the_build_key_changes_with_every_input():
    base = inputs_key(DEFAULT_NGINX_SOURCE)
    assert base == inputs_key(DEFAULT_NGINX_SOURCE)
    changed = [
        replace(DEFAULT_NGINX_SOURCE, rtmp_module_link="dynamic"),
        replace(DEFAULT_NGINX_SOURCE, nginx=replace(DEFAULT_NGINX_SOURCE.nginx, sha256="d" * 64)),
        replace(DEFAULT_NGINX_SOURCE, rtmp_module=replace(DEFAULT_NGINX_SOURCE.rtmp_module, version="1.2.3")),
    ]
    keys = {inputs_key(source) for source in changed}
    assert base not in keys and len(keys) == 3
    # Where a tarball comes from is not an input: the same bytes build the same package.
    moved = replace(DEFAULT_NGINX_SOURCE, nginx=replace(DEFAULT_NGINX_SOURCE.nginx, url="https://mirror.example/n.tar.gz"))
    assert inputs_key(moved) == base


def test_the_build_key_follows_the_flags_and_the_build_files(monkeypatch, tmp_path):
    base = inputs_key(DEFAULT_NGINX_SOURCE)
    monkeypatch.setattr(nginx_source, "CONFIGURE_FLAGS", (*nginx_source.CONFIGURE_FLAGS, "--with-http_sub_module"))
    assert inputs_key(DEFAULT_NGINX_SOURCE) != base
    monkeypatch.undo()
    files = tmp_path / "source-build"
    files.mkdir()
    for path in nginx_source.build_files():
        (files / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(nginx_source, "BUILD_FILES_DIR", files)
    assert inputs_key(DEFAULT_NGINX_SOURCE) == base
    (files / "nginx.service").write_text("changed\n", encoding="utf-8")
    assert inputs_key(DEFAULT_NGINX_SOURCE) != base


@pytest.fixture
def tarball_server():
    """Serves TARBALL at /nginx.tar.gz on loopback and counts the requests."""
    requests_seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            if self.path != "/nginx.tar.gz":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(TARBALL)))
            self.end_headers()
            self.wfile.write(TARBALL)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests_seen
    finally:
        server.shutdown()
        server.server_close()


def archive(url: str, sha256: str = TARBALL_SHA):
    return replace(DEFAULT_NGINX_SOURCE.nginx, url=url, sha256=sha256)


def test_a_download_is_checked_then_cached(tarball_server, tmp_path):
    base, seen = tarball_server
    first = fetch(archive(f"{base}/nginx.tar.gz"), "site.yml", tmp_path)
    assert first == tmp_path / "sources" / TARBALL_SHA / "nginx.tar.gz" and first.read_bytes() == TARBALL
    assert fetch(archive(f"{base}/nginx.tar.gz"), "site.yml", tmp_path) == first
    assert seen == ["/nginx.tar.gz"], "a cached, still-matching file is not downloaded again"
    first.write_bytes(b"damaged")
    assert fetch(archive(f"{base}/nginx.tar.gz"), "site.yml", tmp_path).read_bytes() == TARBALL
    assert len(seen) == 2


def test_a_wrong_checksum_names_the_field_and_keeps_nothing(tarball_server, tmp_path):
    base, _ = tarball_server
    wrong = "e" * 64
    with pytest.raises(SiteError) as caught:
        fetch_sources(
            replace(
                DEFAULT_NGINX_SOURCE,
                nginx=archive(f"{base}/nginx.tar.gz", wrong),
                rtmp_module=replace(DEFAULT_NGINX_SOURCE.rtmp_module, url=f"{base}/nginx.tar.gz", sha256=wrong),
            ),
            "/sites/s/site.yml",
            tmp_path,
        )
    assert caught.value.status == ExitStatus.INVALID_SITE
    assert [p[1] for p in caught.value.problems] == ["nginx.source.nginx.sha256", "nginx.source.rtmp_module.sha256"]
    assert TARBALL_SHA in caught.value.problems[0][2] and wrong in caught.value.problems[0][2]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "neither the download nor a partial file is kept"


def test_an_unreachable_url_says_what_to_do(tarball_server, tmp_path):
    base, _ = tarball_server
    with pytest.raises(SourceFetchError) as caught:
        fetch(archive(f"{base}/missing.tar.gz"), "site.yml", tmp_path)
    assert "404" in str(caught.value) and "file:" in str(caught.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_long_build_reports_each_minute_once():
    import io

    from pi_stream.console import Console
    from pi_stream.workflows import DeployProgress

    err = io.StringIO()
    progress = DeployProgress(Console(out=io.StringIO(), err=err))
    task = "nginx_rtmp : Build nginx with nginx-rtmp-module into pi-stream-nginx_1.26.3_amd64.deb"
    for elapsed in (10, 50, 61, 70, 125, 130):
        progress({"event": "async_poll", "host": "pi1", "task": task, "elapsed": elapsed})
    progress({"event": "async_poll", "host": "pi2", "task": task, "elapsed": 65})
    assert err.getvalue().splitlines() == [
        "      still running on pi1: 1 min",
        "      still running on pi1: 2 min",
        "      still running on pi2: 1 min",
    ]


def test_an_unquoted_all_digit_checksum_is_told_to_be_quoted(tmp_path):
    """YAML reads 64 unquoted digits as a number; "must be a string, got int" left the user guessing."""
    digits = "1234567890" * 6 + "1234"
    directory = site_with(tmp_path, {"source": {"nginx": {"version": "1.26.3", "url": "https://e.org/n.tgz"}}})
    text = (directory / "site.yml").read_text().replace("url: https://e.org/n.tgz", f"url: https://e.org/n.tgz\n      sha256: {digits}")
    (directory / "site.yml").write_text(text)
    message = problems_of(directory)["nginx.source.nginx.sha256"]
    assert "put the value in quotes" in message and 'sha256: "..."' in message, message


# --- OvenMediaEngine's sources (webrtc.install_method source): the same fetch, the same key rules ----------


def ome_site(tmp_path, ome_sha256: str, **webrtc):
    from tests.conftest import write_site

    tarballs = {"ome.tar.gz": b"ome bytes\n", "spdlog.tar.xz": b"spdlog bytes\n"}
    source = {"ome": {"version": "0.19.0", "file": "ome.tar.gz", "sha256": ome_sha256},
              "spdlog": {"version": "1.15.2", "file": "spdlog.tar.xz", "sha256": hashlib.sha256(tarballs["spdlog.tar.xz"]).hexdigest()}}
    directory = write_site(tmp_path / "site", {"name": "s", "cameras": [{"name": "cam", "source": {"type": "testsrc"}}],
                                               "webrtc": {"source": source, **webrtc}})
    for name, content in tarballs.items():
        (directory / name).write_bytes(content)
    return directory


def test_omes_tarballs_are_fetched_and_checked_before_anything_runs(tmp_path):
    from pi_stream.console import Console
    from pi_stream.workflows import run_fetch_sources

    directory = ome_site(tmp_path, hashlib.sha256(b"ome bytes\n").hexdigest())
    paths = run_fetch_sources(load_site(directory), Console(show_progress=False), tmp_path / "cache")
    assert sorted(p.name for p in paths) == ["ome.tar.gz", "spdlog.tar.xz"]
    assert all(p.is_file() and str(p).startswith(str(tmp_path / "cache" / "sources")) for p in paths)
    container = ome_site(tmp_path / "c", "0" * 64, install_method="container", image="x/ome@sha256:" + "a" * 64)
    assert run_fetch_sources(load_site(container), Console(show_progress=False), tmp_path / "cache") == []


def test_a_wrong_ome_checksum_names_its_field(tmp_path):
    from pi_stream.console import Console
    from pi_stream.workflows import run_fetch_sources

    directory = ome_site(tmp_path, "0" * 64)
    with pytest.raises(SiteError) as info:
        run_fetch_sources(load_site(directory), Console(show_progress=False), tmp_path / "cache")
    [(_, field, message)] = info.value.problems
    assert field == "webrtc.source.ome.sha256" and "nothing was built or changed" in message


def test_the_ome_build_key_changes_with_every_input(tmp_path, monkeypatch):
    from dataclasses import replace

    from pi_stream import ome_source
    from pi_stream.site.webrtc import DEFAULT_OME_BUILD

    base = ome_source.inputs_key(DEFAULT_OME_BUILD)
    other_ome = replace(DEFAULT_OME_BUILD, ome=replace(DEFAULT_OME_BUILD.ome, sha256="1" * 64))
    other_spdlog = replace(DEFAULT_OME_BUILD, spdlog=replace(DEFAULT_OME_BUILD.spdlog, version="1.15.3"))
    unoptimized = replace(DEFAULT_OME_BUILD, optimize=False)
    keys = {base, ome_source.inputs_key(other_ome), ome_source.inputs_key(other_spdlog), ome_source.inputs_key(unoptimized)}
    assert len(keys) == 4
    assert ome_source.inputs_key(replace(DEFAULT_OME_BUILD, build_host="builder")) == base, "where it is built is no input"
    files = tmp_path / "files"
    files.mkdir()
    (files / "build-ome-deb.sh").write_text("#!/bin/sh\n")
    monkeypatch.setattr(ome_source, "BUILD_FILES_DIR", files)
    before = ome_source.inputs_key(DEFAULT_OME_BUILD)
    (files / "build-ome-deb.sh").write_text("#!/bin/sh\nset -eu\n")
    assert ome_source.inputs_key(DEFAULT_OME_BUILD) != before
