"""Debian 13 trixie, the base of today's Raspberry Pi OS: the same site deploys, verifies and stays idempotent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.status import format_host, read_host_status
from pi_stream.updates import read_report
from pi_stream import verify
from pi_stream.verify import Check, security_updates, verify_site
from pi_stream.workflows import run_deploy, run_status
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.lab.conftest import booted_lab, ssh
from tests.lab.fake_archive import PACKAGE, build_deb, write_archive

LAB_NAME = "test-trixie"
STEADY_SECONDS = 60


@pytest.fixture(scope="module")
def trixie_lab():
    with booted_lab(LAB_NAME, hosts=1, suite="trixie") as state:
        yield state


@pytest.fixture(scope="module")
def trixie_site(trixie_lab, tmp_path_factory):
    directory = write_site(
        tmp_path_factory.mktemp("trixie") / "site",
        {"name": "trixie", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]},
    )
    trixie_lab.write_inventory(directory / "inventory.yml")
    return load_site(directory)


def test_trixie_deploys_verifies_and_is_idempotent(trixie_site):
    first = run_deploy(trixie_site, Console())
    assert first.status == ExitStatus.OK, first.failures
    result = verify_site(trixie_site, render_site(trixie_site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    again = run_deploy(trixie_site, Console(show_progress=False))
    assert again.status == ExitStatus.OK and again.stats["pi1"].changed == 0


def test_trixie_live_stream_stays_up_beside_snapshots(trixie_site):
    """ffmpeg 7 once held the live output back to the snapshot cadence: nginx-rtmp dropped it as idle every ~40 s."""
    # Long enough for several snapshot intervals and more than one drop_idle_publisher window.
    # "updated" is when the supervisor last wrote (every 2 s), so it trails the clock: read until
    # the file itself says the camera has been live that long, never past a bound.
    deadline = time.monotonic() + STEADY_SECONDS + 30
    yard = camera_status(trixie_site)
    since = yard["since"]
    while yard["updated"] - since < STEADY_SECONDS and time.monotonic() < deadline:
        time.sleep(max(1.0, min(5.0, STEADY_SECONDS - (yard["updated"] - since))))
        yard = camera_status(trixie_site)
        assert yard["state"] == "live" and yard["since"] == since, yard
    assert yard["state"] == "live" and yard["updated"] - since >= STEADY_SECONDS, yard
    assert (yard["failures"], yard["last_error"]) == (0, None), yard
    assert yard["snapshots"]["latest_at"], yard
    result = verify_site(trixie_site, render_site(trixie_site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]


def camera_status(site) -> dict:
    status = read_host_status(site, "pi1")
    assert not status.error, status.error
    (yard,) = status.document["cameras"]
    return yard


def on_pi(lab_state, command: str, timeout: float = 60) -> str:
    result = ssh(lab_state, "pi1", command, timeout=timeout)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def security_check(site) -> Check:
    """verify's "security updates" check alone (the whole verify is tested above)."""
    ok, detail = security_updates(verify.testinfra_host(site, site.hosts[0]), site)
    return Check("pi1", "security updates", ok, detail)


def canary(site) -> dict | None:
    report = read_report(verify.testinfra_host(site, site.hosts[0]))
    return next((p for p in report["pending"] if p["package"] == PACKAGE), None)


def test_security_updates_come_from_the_security_archive_alone_and_stuck_ones_are_reported(trixie_lab, trixie_site, tmp_path):
    """The policy as apt reads it on the Pi, then unattended-upgrades for real: a fix in a security archive is
    installed and one in the main archive is not; a fix held back past a run fails verify and status.

    Debian's own archives change weekly, so the pending fix is a package of the test's own (tests/lab/fake_archive.py),
    in a security archive and, newer, in a main archive; the real pending updates are installed along the way."""
    dump = on_pi(trixie_lab, "apt-config dump Unattended-Upgrade::Origins-Pattern")
    origins = [line.split(" ", 1)[1] for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")]
    # Debian's 50unattended-upgrades lists its own patterns (point releases too): ours replace them (#clear).
    assert origins == ['"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";',
                       '"origin=Debian,codename=${distro_codename},label=Debian-Security";',
                       '"origin=Raspbian,codename=${distro_codename},label=Raspbian";'], dump
    assert "*-*-* 04:00:00" in on_pi(trixie_lab, "systemctl show -P TimersCalendar apt-daily-upgrade.timer")
    assert on_pi(trixie_lab, "systemctl is-enabled apt-daily-upgrade.timer apt-daily.timer").split() == ["enabled", "enabled"]

    root = Path(trixie_lab.hosts[0].root)
    archives = root / "srv/pi-stream-test-archives"
    write_archive(archives / "security", "1.1", "Debian-Security", "trixie-security")
    write_archive(archives / "main", "1.2", "Debian", "trixie")
    build_deb(archives, "1.0")
    (root / "etc/apt/sources.list.d/pi-stream-test.list").write_text(
        "deb [trusted=yes] file:/srv/pi-stream-test-archives/security ./\n"
        "deb [trusted=yes] file:/srv/pi-stream-test-archives/main ./\n"
    )
    on_pi(trixie_lab, f"dpkg -i /srv/pi-stream-test-archives/{PACKAGE}_1.0_all.deb && apt-get update -q", timeout=300)
    assert canary(trixie_site) == {"package": PACKAGE, "installed": "1.0", "available": "1.1"}, "the main archive's 1.2 is no security fix"
    assert ssh(trixie_lab, "pi1", "test -e /run/reboot-required").returncode == 1, "a reboot would end the lab's container"

    # Held back: unattended-upgrades runs, sees the fix and leaves it; that is a failure, not a fix on its way.
    on_pi(trixie_lab, f"apt-mark hold {PACKAGE}")
    on_pi(trixie_lab, "unattended-upgrade", timeout=900)
    stuck = security_check(trixie_site)
    assert not stuck.ok and "stayed pending after unattended-upgrades ran" in stuck.detail, stuck
    assert run_status(trixie_site, Console(show_progress=False)) == ExitStatus.VERIFY_FAILED

    on_pi(trixie_lab, f"apt-mark unhold {PACKAGE}")
    on_pi(trixie_lab, "unattended-upgrade", timeout=900)
    assert on_pi(trixie_lab, f"dpkg-query -W -f='${{Version}}' {PACKAGE}") == "1.1"
    assert canary(trixie_site) is None
    fixed = security_check(trixie_site)
    assert fixed.ok and fixed.detail.startswith("none pending; last run "), fixed

    # A reboot an update asked for is said, with what asked for it.
    on_pi(trixie_lab, "echo '*** System restart required ***' > /run/reboot-required && echo linux-image-canary > /run/reboot-required.pkgs")
    try:
        status = read_host_status(trixie_site, "pi1")
        assert status.updates is not None and status.updates.ok, status.updates
        assert any("reboot due since" in n and "linux-image-canary" in n and "reboots after the next run" in n for n in status.updates.notes)
        assert "security updates: none pending" in format_host(status)
    finally:
        on_pi(trixie_lab, "rm -f /run/reboot-required /run/reboot-required.pkgs /etc/apt/sources.list.d/pi-stream-test.list")
