"""The Pi's update report (templates/.../pi_stream_updates.py): its decisions, with dpkg's own version ordering.

The report itself reads python3-apt's cache on the Pi (tests/lab); here its
rules are checked: which Debian security versions of nginx concern a build
from source, and how versions compare.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
    assert set(document) == {"pending", "policy", "sources", "matched", "lists_updated", "last_run", "running", "next_run", "reboot",
                             "restart", "nginx_source"}
    assert set(document["matched"]) <= set(document["sources"])
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


# An apt state as a 32-bit Raspberry Pi OS (armhf) has it: Raspbian's archive, which has no security suite (its
# fixes land in its main suite), labelled as raspbian.raspberrypi.com's Release file labels it.
RASPBIAN = ("raspbian.raspberrypi.com_raspbian_dists_bookworm", "deb [trusted=yes] http://raspbian.raspberrypi.com/raspbian/ bookworm main",
            "Origin: Raspbian\nLabel: Raspbian\nSuite: stable\nCodename: bookworm\nArchitectures: armhf\nComponents: main\n")
# A source no pattern of the policy names (a Pi whose sources were replaced by some vendor's mirror).
VENDOR = ("mirror.example.org_debian_dists_bookworm", "deb [trusted=yes] http://mirror.example.org/debian/ bookworm main",
          "Origin: Example\nLabel: Example\nSuite: stable\nCodename: bookworm\nArchitectures: armhf\nComponents: main\n")
INSTALLED = "3.0.15-1~deb12u1+rpi1"
FIXED = "3.0.17-1~deb12u2+rpi1"

APT_STATE_DRIVER = """
import importlib.util, json, sys
import apt_pkg
root, script, policy_file = sys.argv[1:4]
apt_pkg.init_config()
apt_pkg.config.clear("Unattended-Upgrade::Origins-Pattern")  # this machine's own, if any: the rendered file decides
for key, value in {"Dir::State::status": root + "/status", "Dir::Etc::sourcelist": root + "/sources.list",
                   "Dir::Etc::sourceparts": root + "/sources.list.d", "Dir::State::lists": root + "/lists/",
                   "Dir::Etc::preferences": root + "/preferences", "Dir::Etc::preferencesparts": root + "/preferences.d",
                   "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": "", "APT::Architecture": "armhf"}.items():
    apt_pkg.config.set(key, value)
apt_pkg.config.clear("APT::Architectures")
apt_pkg.config.set("APT::Architectures::", "armhf")
apt_pkg.read_config_file(apt_pkg.config, policy_file)
apt_pkg.init_system()
spec = importlib.util.spec_from_file_location("pi_stream_updates", script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
state = module.security_state(apt_pkg.Cache(None), apt_pkg.config.value_list(module.POLICY_KEY),
                              {"distro_id": "Raspbian", "distro_codename": "bookworm"}, apt_pkg.version_compare, "armhf")
print(json.dumps(state))
"""


def apt_state(root: Path, archives) -> Path:
    """libssl3 installed at INSTALLED; each archive (lists name, sources line, Release) offers FIXED."""
    (root / "lists").mkdir(parents=True)
    (root / "sources.list.d").mkdir()
    (root / "preferences.d").mkdir()
    (root / "status").write_text(f"Package: libssl3\nStatus: install ok installed\nArchitecture: armhf\nVersion: {INSTALLED}\n"
                                 "Maintainer: nobody\nDescription: TLS\n")
    (root / "sources.list").write_text("".join(line + "\n" for _, line, _ in archives))
    for lists_name, _, release in archives:
        (root / "lists" / f"{lists_name}_Release").write_text(release)
        (root / "lists" / f"{lists_name}_main_binary-armhf_Packages").write_text(
            f"Package: libssl3\nArchitecture: armhf\nVersion: {FIXED}\nFilename: pool/main/o/openssl/libssl3.deb\n"
            "Size: 1\nMaintainer: nobody\nDescription: TLS\n")
    return root


def policy_state(root: Path, policy: bytes, tmp_path: Path) -> dict:
    policy_file = tmp_path / "52pi-stream-security-updates"
    policy_file.write_bytes(policy)
    result = subprocess.run(["/usr/bin/python3", "-c", APT_STATE_DRIVER, str(root), str(SCRIPT), str(policy_file)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def rendered_policy(tmp_path_factory) -> bytes:
    from pi_stream.render import render_site
    from pi_stream.site import load_site
    from tests.conftest import EXAMPLE_SITES, write_site

    site = load_site(write_site(tmp_path_factory.mktemp("site"), *EXAMPLE_SITES["testsrc-https"]))
    return render_site(site)["pi1"]["etc/apt/apt.conf.d/52pi-stream-security-updates"].content


def needs_python3_apt():
    if subprocess.run(["/usr/bin/python3", "-c", "import apt_pkg"], capture_output=True, timeout=30, check=False).returncode:
        pytest.fail("needs Debian's python3-apt (scripts/install.sh installs it)")


def test_raspbian_fixes_are_pending_under_the_policy(rendered_policy, tmp_path):
    """32-bit Raspberry Pi OS: the fix in Raspbian's main suite is pending (unattended-upgrades installs it), and the
    policy matches Raspbian's source. Before, no pattern named Raspbian: nothing pending, and nothing ever installed."""
    from pi_stream.site import DEFAULT_UPDATE_POLICY
    from pi_stream.updates import judge

    needs_python3_apt()
    state = policy_state(apt_state(tmp_path / "apt", [RASPBIAN]), rendered_policy, tmp_path)
    assert "origin=Raspbian,codename=${distro_codename},label=Raspbian" in state["policy"]
    assert state["pending"] == [{"package": "libssl3", "installed": INSTALLED, "available": FIXED}]
    assert state["matched"] == state["sources"] == ["origin=Raspbian,label=Raspbian,codename=bookworm (raspbian.raspberrypi.com)"]
    verdict = judge({**HAND_REPORT, **state}, DEFAULT_UPDATE_POLICY, NOW)
    assert verdict.ok and verdict.summary.startswith("1 pending (libssl3), installed at the next run")


def test_a_policy_that_matches_none_of_the_pis_sources_is_a_failure(rendered_policy, tmp_path):
    """A Pi whose only archive no pattern names: nothing is pending because nothing can be, which is no "none pending"."""
    from pi_stream.site import DEFAULT_UPDATE_POLICY, UpdatePolicy
    from pi_stream.updates import judge

    needs_python3_apt()
    state = policy_state(apt_state(tmp_path / "apt", [VENDOR]), rendered_policy, tmp_path)
    assert state["pending"] == [] and state["matched"] == []
    verdict = judge({**HAND_REPORT, **state}, DEFAULT_UPDATE_POLICY, NOW)
    assert not verdict.ok
    assert verdict.summary.startswith("the security policy matches none of this Pi's apt sources: "
                                      "origin=Example,label=Example,codename=bookworm (mirror.example.org)")
    # The site that turned updates off is told, not failed.
    off = judge({**HAND_REPORT, **state}, UpdatePolicy(security=False, time="04:00", reboot=True), NOW)
    assert off.ok


def test_debians_policy_alone_matches_nothing_on_raspbian(tmp_path):
    """The policy as it was (Debian's security archive only) on 32-bit Raspberry Pi OS: "none pending", while a fix
    waits in Raspbian's main suite. The report now says it matches no source, and the judge fails it."""
    from pi_stream.site import DEFAULT_UPDATE_POLICY
    from pi_stream.updates import judge

    needs_python3_apt()
    debian_only = (b'#clear Unattended-Upgrade::Origins-Pattern;\nUnattended-Upgrade::Origins-Pattern {\n'
                   b'    "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";\n'
                   b'    "origin=Debian,codename=${distro_codename},label=Debian-Security";\n};\n')
    state = policy_state(apt_state(tmp_path / "apt", [RASPBIAN]), debian_only, tmp_path)
    assert state["pending"] == [] and state["matched"] == []
    assert not judge({**HAND_REPORT, **state}, DEFAULT_UPDATE_POLICY, NOW).ok


NOW = 1_800_000_000.0
# The rest of a report, as tests/unit/test_updates.py writes one: lists read after the last run, the next run scheduled.
HAND_REPORT = {"lists_updated": NOW - 3600, "last_run": NOW - 6 * 3600, "next_run": NOW + 10 * 3600, "running": False,
               "reboot": {"required": False, "since": None, "packages": []}, "restart": [], "nginx_source": None}
