"""The Pi's update report (templates/.../pi_stream_updates.py): its decisions, with dpkg's own version ordering.

The report itself reads python3-apt's cache on the Pi (tests/lab); here its
rules are checked: which Debian security versions of nginx concern a build
from source, and how versions compare.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from pi_stream.render import TEMPLATES_DIR
from tests.conftest import wait_until

SCRIPT = TEMPLATES_DIR / "usr/local/lib/pi-stream/pi_stream_updates.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("pi_stream_updates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dpkg_compare(a: str, b: str) -> int:
    """-1, 0 or 1, as apt_pkg.version_compare, from dpkg itself."""
    def holds(relation: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, relation, b], timeout=10, check=False).returncode == 0

    return 0 if holds("eq") else (1 if holds("gt") else -1)


def test_debians_security_release_of_the_built_line_is_named(report):
    """A build of 1.22.1 lacks what Debian backported into 1.22.1-9+deb12uN."""
    versions = ["1.22.1-9+deb12u2", "1.22.1-9+deb12u10", "1.22.1-9+deb12u3"]
    assert report.source_build_note("1.22.1-0pistream+3f2a", versions, dpkg_compare) == "1.22.1-9+deb12u10"
    # An older build of the same line: Debian's newer release of it concerns it too.
    assert report.source_build_note("1.22.0-0pistream+3f2a", versions, dpkg_compare) == "1.22.1-9+deb12u10"


def test_other_lines_and_older_debian_releases_are_not_named(report):
    assert report.source_build_note("1.26.3-0pistream+3f2a", ["1.22.1-9+deb12u3"], dpkg_compare) is None
    assert report.source_build_note("1.22.2-0pistream+3f2a", ["1.22.1-9+deb12u3"], dpkg_compare) is None
    assert report.source_build_note("1.26.3-0pistream+3f2a", [], dpkg_compare) is None


def test_versions_split_and_order_as_dpkg_does(report):
    assert report.upstream("1.22.1-9+deb12u2") == "1.22.1"
    assert report.upstream("1:2.6.2") == "2.6.2"
    assert report.upstream("1.2.3-0pistream+ab-c") == "1.2.3-0pistream+ab"
    assert report.nginx_line("1.26.3-3+deb13u1") == "1.26"
    assert report.newest(["1.9-1", "1.10-1", "1.10~rc1-1"], dpkg_compare) == "1.10-1"
    assert report.newest([], dpkg_compare) is None


def test_the_report_runs_on_this_debian_machine():
    """The real thing, against this machine's apt cache (Debian 12, like the Pi): a JSON document with every field."""
    import json
    import os

    has_apt = subprocess.run(["/usr/bin/python3", "-c", "import apt_pkg"], capture_output=True, timeout=30, check=False).returncode == 0
    if os.geteuid() != 0 or not has_apt:
        pytest.fail("needs root and Debian's python3-apt (scripts/install.sh installs it)")
    result = subprocess.run(["/usr/bin/python3", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"pending", "lists_updated", "last_run", "running", "next_run", "reboot", "restart", "nginx_source"}
    assert all(set(p) == {"package", "installed", "available"} for p in document["pending"])
    assert all(dpkg_compare(p["available"], p["installed"]) > 0 for p in document["pending"])
    assert set(document["reboot"]) == {"required", "since", "packages"}


def test_a_running_unattended_upgrade_is_seen(report, tmp_path):
    """A process whose program is .../unattended-upgrade, as the timer and apt-daily start it (python3 SCRIPT)."""
    program = tmp_path / "unattended-upgrade"
    program.write_text("import time\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, str(program)], stdin=subprocess.DEVNULL)
    try:
        wait_until(report.unattended_running, "the process seen in /proc", seconds=10)
    finally:
        process.kill()
        process.wait(timeout=10)



INSTALL_RUN = """\
2026-12-03 04:00:05,101 INFO Starting unattended upgrades script
2026-12-03 04:00:05,102 INFO Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security
2026-12-03 04:00:05,102 INFO Initial blacklist:
2026-12-03 04:00:05,102 INFO Initial whitelist (not strict):
2026-12-03 04:00:09,530 INFO Packages that will be upgraded: libssl3 openssl
2026-12-03 04:00:09,531 INFO Writing dpkg log to /var/log/unattended-upgrades/unattended-upgrades-dpkg.log
2026-12-03 04:00:21,877 INFO All upgrades installed
"""
# What the lab's Pi logged when apt-daily ran `unattended-upgrade --download-only` (18:17, 2026-12-03).
DOWNLOAD_ONLY_RUN = """\
2026-12-03 18:17:56,949 INFO Checking if system is running on battery is skipped. Please install powermgmt-base package.
2026-12-03 18:17:56,957 INFO Starting unattended upgrades script
2026-12-03 18:17:56,957 INFO Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security
2026-12-03 18:17:56,957 INFO Initial blacklist:
2026-12-03 18:17:56,957 INFO Initial whitelist (not strict):
"""


def test_the_last_run_is_the_last_install_run_not_a_download_only_one(report):
    import time

    install_started = time.mktime(time.strptime("2026-12-03 04:00:05", "%Y-%m-%d %H:%M:%S"))
    assert report.last_install_run(INSTALL_RUN) == install_started
    assert report.last_install_run(INSTALL_RUN + DOWNLOAD_ONLY_RUN) == install_started
    assert report.last_install_run(DOWNLOAD_ONLY_RUN) is None
    assert report.last_install_run("") is None
    nothing_to_do = DOWNLOAD_ONLY_RUN + "2026-12-03 18:18:00,001 INFO No packages found that can be upgraded unattended\n"
    assert report.last_install_run(INSTALL_RUN + nothing_to_do) == install_started + 14 * 3600 + 17 * 60 + 51
