"""nginx with nginx-rtmp-module built from source on a simulated Pi: checked sources, one build per set of inputs, clean switches.

A lab of its own ("srctest": pi1 the appliance, pi2 a build host in the last
test) and a controller cache of its own (a temporary PI_STREAM_CACHE), so the
first deploy really builds. The sources are the defaults, Debian's archive
copies of the upstream release tarballs, then bookworm's own nginx release.
Two builds in all: the cold one, and one whose inputs differ in every way a
later test needs (version, module link, build host). The tests run in order:
each starts from the state the previous one left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pi_stream.console import Console
from pi_stream.errors import ExitStatus, SiteError
from pi_stream.nginx_source import CONFIGURE_FLAGS, DEFAULT_NGINX_SOURCE
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.lab.conftest import booted_lab, controller_cache, ssh

LAB = "srctest"
# Debian 12's own nginx release (its archive's copy of nginx.org's tarball).
OLDER_NGINX_URL = "https://deb.debian.org/debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz"
OLDER_NGINX_SHA256 = "9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31"
SITE = {"name": "built", "cameras": [{"name": "yard", "source": {"type": "testsrc"}, "width": 320, "height": 180}]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty controller cache for this module: the first deploy really downloads and builds."""
    with controller_cache(tmp_path_factory.mktemp("pi-stream-cache")) as directory:
        yield directory


@pytest.fixture(scope="module")
def source_lab(cache):
    with booted_lab(LAB, hosts=2) as state:
        yield state


@pytest.fixture(scope="module")
def site_dir(source_lab, tmp_path_factory) -> Path:
    directory = write_site(tmp_path_factory.mktemp("source") / "built", {**SITE, "nginx": {"install_method": "source"}})
    write_inventory(source_lab, directory)
    return directory


def write_inventory(lab_state, site_dir: Path, builders: tuple[str, ...] = ()) -> None:
    """pi1 is the appliance; pi2 is either left out or a build host."""
    lab_state.write_inventory(site_dir / "inventory.yml", builders=builders)
    inventory = yaml.safe_load((site_dir / "inventory.yml").read_text(encoding="utf-8"))
    inventory["all"]["hosts"].pop("pi2", None)
    (site_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")


def set_nginx(site_dir: Path, nginx: dict) -> None:
    data = yaml.safe_load((site_dir / "site.yml").read_text(encoding="utf-8"))
    data["nginx"] = nginx
    (site_dir / "site.yml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def on_pi(lab_state, command: str) -> str:
    result = ssh(lab_state, "pi1", command)
    assert result.returncode == 0, (command, result.stderr)
    return result.stdout


def package_state(lab_state, package: str) -> str:
    """dpkg's state of a package: installed, config-files (removed, not purged), not-installed, or "" when dpkg never heard of it."""
    result = ssh(lab_state, "pi1", f"dpkg-query --show --showformat='${{db:Status-Status}}' {package}")
    return result.stdout.strip() if result.returncode == 0 else ""


def deploy_and_verify(site_dir: Path):
    site = load_site(site_dir)
    result = run_deploy(site, Console())
    assert result.status == ExitStatus.OK, result.failures
    verified = verify_site(site, render_site(site), VIEWER, VIEWER_PASSWORD)
    assert verified.ok, [(c.name, c.detail) for c in verified.failed]
    return result


def packages(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("packages/*/*.deb"))


def test_wrong_checksum_stops_before_anything_changes(source_lab, site_dir, cache):
    wrong = "0" * 64
    module = {"version": "1.2.2", "sha256": wrong, "url": DEFAULT_NGINX_SOURCE.rtmp_module.url}
    set_nginx(site_dir, {"install_method": "source", "source": {"rtmp_module": module}})
    with pytest.raises(SiteError) as caught:
        run_deploy(load_site(site_dir), Console(show_progress=False))
    assert caught.value.status == ExitStatus.INVALID_SITE
    ((file, field, message),) = caught.value.problems
    assert (Path(file).name, field) == ("site.yml", "nginx.source.rtmp_module.sha256")
    assert wrong in message and "nothing was built or changed" in message
    # Nothing reached the Pi: no nginx, no build directory, no package built or cached.
    assert ssh(source_lab, "pi1", "test -e /usr/sbin/nginx || test -e /var/cache/pi-stream-build").returncode == 1
    assert packages(cache) == []


def test_source_build_serves_and_builds_once(source_lab, site_dir, cache):
    set_nginx(site_dir, {"install_method": "source"})
    deploy_and_verify(site_dir)

    version = on_pi(source_lab, "nginx -V 2>&1")
    assert "nginx version: nginx/1.26.3" in version
    configured = version.split("configure arguments:", 1)[1].split()
    assert set(CONFIGURE_FLAGS) <= set(configured)
    assert any(flag.startswith("--add-module=") and flag.endswith("/nginx-rtmp-module") for flag in configured)
    status = on_pi(source_lab, "dpkg-query --show --showformat='${db:Status-Status} ${Version}' pi-stream-nginx")
    assert status.startswith("installed 1.26.3-0pistream+")
    # The package's pin: apt would not install the distribution's nginx, even asked to.
    assert "Candidate: (none)" in on_pi(source_lab, "apt-cache policy nginx")
    assert ssh(source_lab, "pi1", "test -e /var/cache/pi-stream-build").returncode == 1
    (package,) = packages(cache)
    assert status.split()[1] in package

    again = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert again.status == ExitStatus.OK, again.failures
    assert again.stats["pi1"].changed == 0, "an unchanged build runs nothing: idempotence from Ansible's stats"
    assert packages(cache) == [package]


def test_switching_to_the_package_leaves_nothing_of_the_build(source_lab, site_dir, cache):
    set_nginx(site_dir, {"install_method": "package"})
    deploy_and_verify(site_dir)
    assert package_state(source_lab, "nginx") == "installed"
    # Purged, not only removed: no trace of the build in dpkg, apt, systemd or /etc.
    assert package_state(source_lab, "pi-stream-nginx") in ("", "not-installed")
    assert ssh(source_lab, "pi1", "test -e /etc/apt/preferences.d/pi-stream-nginx").returncode == 1
    assert on_pi(source_lab, "find /etc/nginx -name '*.dpkg-*'") == ""
    assert on_pi(source_lab, "systemctl list-unit-files --no-legend 'nginx*'").split()[0] == "nginx.service"
    assert len(on_pi(source_lab, "systemctl list-unit-files --no-legend 'nginx*'").splitlines()) == 1
    assert on_pi(source_lab, "dpkg -S /usr/sbin/nginx").split(":")[0] in ("nginx", "nginx-core")


def test_back_to_source_an_older_nginx_with_a_dynamic_module_built_on_a_build_host(source_lab, site_dir, cache):
    """From the package back to the source method, with three inputs changed at once, so one build checks them all:
    bookworm's own nginx release given by version, URL and sha256; the module loaded dynamically; built on pi2 for pi1."""
    write_inventory(source_lab, site_dir, builders=("pi2",))
    older = {"version": "1.22.1", "sha256": OLDER_NGINX_SHA256, "url": OLDER_NGINX_URL}
    set_nginx(site_dir, {"install_method": "source", "source": {"nginx": older, "rtmp_module_link": "dynamic", "build_host": "pi2"}})
    deploy_and_verify(site_dir)
    version = on_pi(source_lab, "nginx -V 2>&1")
    assert "nginx version: nginx/1.22.1" in version
    # The new binary is the one serving, not only the one on disk.
    assert on_pi(source_lab, "readlink /proc/$(cat /run/nginx.pid)/exe").strip() == "/usr/sbin/nginx"
    assert "--add-dynamic-module=" in version
    loaded = on_pi(source_lab, "cat /etc/nginx/modules-enabled/50-mod-rtmp.conf").strip()
    assert loaded == "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;"
    assert on_pi(source_lab, "dpkg -S /usr/lib/nginx/modules/ngx_rtmp_module.so").startswith("pi-stream-nginx:")
    assert package_state(source_lab, "nginx-common") in ("", "not-installed"), "purged, not left in state config-files"
    # pi2 built (it has the tools) and is nothing else: no nginx, no build left, no appliance.
    assert ssh(source_lab, "pi2", "command -v gcc").returncode == 0
    leftovers = "test -e /usr/sbin/nginx || test -e /var/cache/pi-stream-build || test -e /etc/pi-stream"
    assert ssh(source_lab, "pi2", leftovers).returncode == 1
    assert len(packages(cache)) == 2
