"""Sixteen NVR channels through a simulated Pi: the session budget, one session per camera, an outage, retention.

A lab of its own ("nvrtest", one Pi), so its redeploys never disturb the
two-Pi farm. The fake NVR (gst-rtsp-server, pi_stream/lab/fake_nvr.py) runs
in a network namespace of its own on the lab bridge, refuses connections past
its limit like a consumer NVR, and counts every one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.status import read_host_status
from pi_stream.verify import verify_site
from pi_stream.workflows import budget_notes, run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.lab.conftest import booted_lab, nvr_beside, ssh

LAB = "nvrtest"
CHANNELS = 16
NVR_USER, NVR_PASSWORD = "admin", "nvr:p@ss/word"
SCHEDULE = {"retry_first_seconds": 5, "retry_max_seconds": 300, "disable_after_failures": 10}


@pytest.fixture(scope="module")
def nvr_lab():
    with booted_lab(LAB, hosts=1) as state:
        yield state


@pytest.fixture(scope="module")
def nvr(nvr_lab, tmp_path_factory):
    with nvr_beside(nvr_lab, tmp_path_factory.mktemp("nvr"), CHANNELS, 8, NVR_USER, NVR_PASSWORD) as server:
        yield server


def write_depot(directory: Path, nvr_lab, address: str, max_sessions: int) -> Path:
    cameras = [
        {
            "name": f"ch{n:02d}",
            "priority": 100 - n,  # ch01 matters most
            "source": {"type": "rtsp", "nvr": "depot", "channel": n},
            "snapshots": {"interval_seconds": 4 if n <= 4 else 10, "keep_days": 2},
        }
        for n in range(1, CHANNELS + 1)
    ]
    site = {
        "name": "depot",
        "nvrs": {
            "depot": {
                "host": address, "username": NVR_USER, "password": NVR_PASSWORD,
                "path_template": "/ip{channel}/0", "max_sessions": max_sessions,
            }
        },
        "capture": SCHEDULE,
        "cameras": cameras,
    }  # fmt: skip
    write_site(directory, site, viewers=not (directory / credentials.VIEWERS_FILE).exists())
    nvr_lab.write_inventory(directory / "inventory.yml")
    return directory


@pytest.fixture(scope="module")
def depot(nvr_lab, nvr, tmp_path_factory):
    directory = write_depot(tmp_path_factory.mktemp("depot") / "depot", nvr_lab, nvr.address, max_sessions=8)
    result = run_deploy(load_site(directory), Console(show_progress=False))
    assert result.status == ExitStatus.OK, result.failures
    return directory


def camera_states(site_dir: Path) -> dict[str, str]:
    status = read_host_status(load_site(site_dir), "pi1")
    return {c["camera"]: c["state"] for c in status.document.get("cameras", [])}


def test_sixteen_cameras_on_eight_sessions_run_the_eight_that_matter_most(depot, nvr):
    site = load_site(depot)
    [note] = budget_notes(site)
    assert "allows 8 sessions" in note and "ch09" in note and "ch16" in note and "ch08" not in note
    top = {f"ch{n:02d}" for n in range(1, 9)}
    wait_until(lambda: {n for n, s in camera_states(depot).items() if s == "live"} == top, "ch01-ch08 live", 120, 2)
    status = read_host_status(site, "pi1")
    waiting = [c for c in status.document["cameras"] if c["state"] == "waiting"]
    assert {c["camera"] for c in waiting} == {f"ch{n:02d}" for n in range(9, 17)}
    assert "8 of 8 sessions" in waiting[0]["detail"]
    assert status.document["nvrs"][0]["sessions_in_use"] == 8
    stats = nvr.stats()
    assert stats.total.refused == 0 and stats.total.open == 8
    assert all(stats.channels[n].connections == 0 for n in range(9, 17)), "waiting cameras never touch the NVR"
    result = verify_site(site, render_site(site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    assert any(c.name == "ch12: capture state" and "session budget" in c.detail for c in result.checks)
    assert any(c.name == "ch01: latest snapshot" and c.ok for c in result.checks)


# What could open a second session shows within this: a snapshot taken on a connection of its own
# (every 4-10 s here), a stall wrongly seen (stall_seconds 20), nginx-rtmp dropping an idle publisher (10 s).
STEADY_SECONDS = 60


def test_steady_state_is_one_connection_per_camera(depot, nvr):
    """Live HLS and snapshots every 4-10 s for a minute: still the one session each camera opened."""
    wait_until(lambda: list(camera_states(depot).values()).count("live") == 8, "eight cameras live", 60, 2)
    time.sleep(STEADY_SECONDS)
    stats = nvr.stats()
    per_camera = {n: stats.channels[n].connections for n in range(1, 9)}
    assert set(per_camera.values()) == {1}, per_camera
    assert stats.total.refused == 0


def test_a_one_minute_outage_recovers_every_camera_without_a_storm(depot, nvr):
    wait_until(lambda: list(camera_states(depot).values()).count("live") == 8, "eight cameras live", 60, 2)
    began = time.time()
    nvr.outage(60)
    wait_until(lambda: camera_states(depot).get("ch01") == "backing_off", "ch01 backing off", 30, 1)
    time.sleep(55)
    wait_until(lambda: list(camera_states(depot).values()).count("live") == 8, "all eight live again", 240, 2)
    recovered = time.time() - began
    stats = nvr.stats(since=began)
    attempts = {n: stats.attempts(channel=n, since=began) for n in range(1, CHANNELS + 1)}
    # Backoff 5 s doubling, jitter 0.5-1: attempts start within 2.5-5, 7.5-15, 17.5-35, 37.5-75 s, so at most
    # 4 fall inside a 60 s outage, plus the one that reconnects.
    assert all(attempts[n] <= 5 for n in range(1, 9)), attempts
    assert all(attempts[n] == 0 for n in range(9, 17)), f"waiting cameras were promoted during the outage: {attempts}"
    print(f"outage: attempts per camera {attempts}, every camera live again {recovered:.0f} s after it began")


def test_a_budget_of_sixteen_runs_all(depot, nvr, nvr_lab):
    nvr.set_limit(16)
    write_depot(depot, nvr_lab, nvr.address, max_sessions=16)
    site = load_site(depot)
    assert budget_notes(site) == []
    result = run_deploy(site, Console(show_progress=False))
    assert result.status == ExitStatus.OK, result.failures
    wait_until(lambda: list(camera_states(depot).values()).count("live") == 16, "all sixteen live", 120, 2)
    assert nvr.stats().total.open == 16


def test_retention_removes_old_days_and_nothing_else(depot, nvr_lab):
    base = "/srv/pi-stream/snapshots/depot/ch01"
    today = ssh(nvr_lab, "pi1", "date", "+%F").stdout.strip()
    old = ["2020-01-01", "2020-01-02"]
    # As the supervisor would have left them: owned by its user.
    made = [f"mkdir -p {base}/{d} && touch {base}/{d}/101500.jpg" for d in old] + [f"mkdir -p {base}/keep-me"]
    setup = " && ".join([*made, f"chown -R pi-stream:pi-stream {base}"])
    assert ssh(nvr_lab, "pi1", setup).returncode == 0
    assert ssh(nvr_lab, "pi1", "systemctl", "start", "pi-stream-retention.service", timeout=120).returncode == 0
    left = ssh(nvr_lab, "pi1", "ls", base).stdout.split()
    assert not set(old) & set(left) and "keep-me" in left and today in left, left
