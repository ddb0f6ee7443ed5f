"""The capture supervisor's decisions, driven with a fake clock and stand-in processes: budgets, staggering,
backoff with jitter, disabling, re-probes, on-demand, retention. The real ffmpeg runs in test_supervisor_run.py."""

from __future__ import annotations

import datetime
import importlib.util
import random
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "templates/usr/local/lib/pi-stream/pi_stream_capture.py"


def load_script():
    spec = importlib.util.spec_from_file_location("pi_stream_capture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capture = load_script()

SCHEDULE = {
    "stagger_seconds": 2,
    "retry_first_seconds": 5,
    "retry_max_seconds": 300,
    "disable_after_failures": 4,
    "reprobe_seconds": 1800,
    "stall_seconds": 20,
    "on_demand_idle_seconds": 60,
}


class FakeProcess:
    def __init__(self) -> None:
        self.returncode = None

    def poll(self):
        return self.returncode


def camera_spec(name: str, priority: int = 50, nvr: str | None = "shed", on_demand: bool = False) -> dict:
    return {
        "name": name, "title": name, "priority": priority, "nvr": nvr, "source_type": "rtsp", "on_demand": on_demand,
        "transcode": False, "source_url": f"rtsp://nvr/{name}", "pipe_from": [], "input": [], "filter": "", "live": [],
        "snapshots": [], "recording": [], "snapshot_interval_seconds": 10, "snapshot_dir": "", "snapshot_keep_days": 0,
        "recording_dir": "", "recording_keep_days": 0,
    }  # fmt: skip


def make_supervisor(tmp_path: Path, cameras: list[dict], max_sessions: int = 8, **schedule) -> capture.Supervisor:
    config = {
        "site": "test", "ffmpeg": ["ffmpeg"], "encoder_env": "", "runtime_dir": str(tmp_path),
        "schedule": {**SCHEDULE, **schedule},
        "storage": {"snapshots_path": "", "recordings_path": "", "recordings_on_root_fs": False, "min_free_percent": 10},
        "nvrs": [{"name": "shed", "max_sessions": max_sessions}], "cameras": cameras,
    }  # fmt: skip
    supervisor = capture.Supervisor(config, {}, [], rng=random.Random(7))

    def start(camera, now):  # what Supervisor.start does to the camera's state, without a process
        camera.proc = FakeProcess()
        camera.sessions_opened += 1
        camera.started_at = camera.last_progress_at = now
        camera.live_since, camera.stopping, camera.exit_reason = 0.0, False, ""
        camera.set_state("starting", "connecting", now)
        if camera.nvr:
            supervisor.last_start[camera.nvr] = now

    def stop(camera, now, reason):
        camera.proc = None
        camera.set_state("stopped", reason, now)

    supervisor.start = start
    supervisor.stop = stop
    return supervisor


def go_live(supervisor, camera, now: float) -> None:
    camera.live_since = now
    camera.set_state("live", "streaming", now)


def fail(supervisor, camera, now: float, error: str = "Connection refused") -> None:
    camera.proc = None
    camera.last_error = error
    supervisor.exited(camera, 1, now)


def run_until(supervisor, start: float, seconds: float, step: float = 0.5) -> float:
    now = start
    while now < start + seconds:
        supervisor.assign(now)
        now += step
    return now


def test_sixteen_cameras_on_eight_sessions_run_the_eight_highest_priorities(tmp_path):
    specs = [camera_spec(f"cam{i:02d}", priority=i * 5) for i in range(16)]
    supervisor = make_supervisor(tmp_path, specs, max_sessions=8)
    run_until(supervisor, 1000.0, 60)
    running = sorted(c.name for c in supervisor.cameras if c.proc is not None)
    assert running == [f"cam{i:02d}" for i in range(8, 16)]
    waiting = [c for c in supervisor.cameras if c.proc is None]
    assert {c.state for c in waiting} == {"waiting"}
    assert "8 of 8 sessions" in waiting[0].detail and "max_sessions" in waiting[0].detail
    status = supervisor.camera_status(waiting[0], 1060.0)
    assert status["nvr"] == {"name": "shed", "sessions_in_use": 8, "max_sessions": 8}


def test_starts_on_one_nvr_are_staggered(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec(f"cam{i}") for i in range(4)], stagger_seconds=2)
    starts = []
    now = 0.0
    while now < 10:
        before = sum(c.proc is not None for c in supervisor.cameras)
        supervisor.assign(now)
        if sum(c.proc is not None for c in supervisor.cameras) > before:
            starts.append(now)
        now += 0.5
    assert starts == [0.0, 2.0, 4.0, 6.0]


def test_backoff_doubles_with_jitter_up_to_the_cap_then_disables(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("cam")], disable_after_failures=8, retry_max_seconds=60)
    camera = supervisor.cameras[0]
    now, delays = 0.0, []
    for attempt in range(1, 9):
        supervisor.assign(now)
        assert camera.proc is not None, f"attempt {attempt} did not start"
        fail(supervisor, camera, now)
        if camera.state == "disabled":
            break
        delays.append(camera.retry_at - now)
        supervisor.assign(now + 0.1)
        assert camera.proc is None and camera.state == "backing_off"
        now = camera.retry_at
    bases = [min(60, 5 * 2 ** (n - 1)) for n in range(1, 8)]
    assert all(base / 2 <= delay <= base for delay, base in zip(delays, bases, strict=True)), delays
    assert len(set(round(d / b, 3) for d, b in zip(delays, bases, strict=True))) > 1, "jitter varies the delays"
    assert camera.state == "disabled" and camera.failures == 8
    assert 1800 * 0.8 <= camera.retry_at - now <= 1800 * 1.2
    assert "8 failures in a row" in camera.detail


def test_a_refused_password_disables_at_once(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("cam")])
    camera = supervisor.cameras[0]
    supervisor.assign(0.0)
    camera.proc = FakeProcess()
    supervisor.stderr_line(camera, "[rtsp @ 0x5581] [error] method DESCRIBE failed: 401 Unauthorized")
    assert camera.fatal
    fail(supervisor, camera, 1.0, error=camera.last_error)
    assert camera.state == "disabled" and camera.failures == 1 and "401" in camera.detail
    supervisor.assign(100.0)
    assert camera.proc is None, "no retry before the re-probe: NVRs lock accounts after a few wrong tries"


def test_error_lines_never_carry_the_password(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("cam")])
    camera = supervisor.cameras[0]
    supervisor.stderr_line(camera, "[error] rtsp://admin:s3cret@192.0.2.64:554/ip1/0: Connection refused")
    assert camera.last_error == "rtsp://***@192.0.2.64:554/ip1/0: Connection refused"


def test_h265_without_transcode_is_reported_and_not_retried(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("cam")])
    camera = supervisor.cameras[0]
    supervisor.stderr_line(camera, "[info] Input #0, rtsp, from 'rtsp://nvr/ip1/0':")
    supervisor.stderr_line(camera, "[info]   Stream #0:0: Video: hevc (Main), yuv420p(tv), 320x180, 10 fps")
    assert camera.codec == "hevc" and "H.265" in camera.fatal and "transcode: true" in camera.fatal


def test_an_outage_does_not_hand_the_slots_to_waiting_cameras(tmp_path):
    """When every running camera of an NVR fails, the waiting ones would only fail too: no promotion."""
    specs = [camera_spec(f"cam{i}", priority=100 - i) for i in range(4)]
    supervisor = make_supervisor(tmp_path, specs, max_sessions=2, disable_after_failures=2)
    now = run_until(supervisor, 0.0, 10)
    top = [c for c in supervisor.cameras if c.proc is not None]
    assert [c.name for c in top] == ["cam0", "cam1"]
    opened_before = sum(c.sessions_opened for c in supervisor.cameras)
    for _ in range(2):  # both fail twice: disabled
        for camera in top:
            if camera.proc is None:
                supervisor.assign(camera.retry_at)
            fail(supervisor, camera, max(now, camera.retry_at))
        now = max(c.retry_at for c in top if c.state == "backing_off") if any(c.state == "backing_off" for c in top) else now
    assert {c.state for c in top} == {"disabled"}
    run_until(supervisor, now, 600)
    waiting = supervisor.cameras[2:]
    assert all(c.proc is None and c.sessions_opened == 0 for c in waiting), [c.state for c in waiting]
    assert sum(c.sessions_opened for c in supervisor.cameras) - opened_before <= 2


def test_a_reprobe_that_works_brings_the_nvr_back(tmp_path):
    specs = [camera_spec("cam0", priority=90), camera_spec("cam1", priority=10)]
    supervisor = make_supervisor(tmp_path, specs, max_sessions=1, disable_after_failures=1)
    cam0, cam1 = supervisor.cameras
    supervisor.assign(0.0)
    fail(supervisor, cam0, 1.0)
    assert cam0.state == "disabled"
    supervisor.assign(2.0)
    assert cam1.proc is None, "the NVR failed: the waiting camera is not promoted"
    supervisor.assign(cam0.retry_at + 0.1)
    assert cam0.proc is not None, "a due re-probe takes the free slot"
    go_live(supervisor, cam0, cam0.retry_at + 2)
    supervisor.assign(cam0.retry_at + 3)
    assert cam1.proc is None, "budget of one: still held by cam0"


def test_on_demand_camera_runs_while_watched_and_takes_the_weakest_slot(tmp_path):
    specs = [camera_spec("always", priority=10), camera_spec("porch", priority=80, on_demand=True)]
    supervisor = make_supervisor(tmp_path, specs, max_sessions=1, on_demand_idle_seconds=60)
    always, porch = supervisor.cameras
    supervisor.assign(0.0)
    go_live(supervisor, always, 1.0)
    supervisor.assign(5.0)
    assert porch.proc is None and porch.state == "idle"
    porch.demand_until = 10.0 + 60
    supervisor.assign(10.0)
    assert always.proc is None and always.state == "waiting", "preempted by the watched higher-priority camera"
    supervisor.assign(12.0)
    assert porch.proc is not None
    supervisor.assign(71.0)
    assert porch.proc is None and porch.state == "idle", "nobody watched for on_demand_idle_seconds"
    supervisor.assign(74.0)
    assert always.proc is not None


def test_demand_messages_from_nginx_extend_the_watch(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("porch", on_demand=True), camera_spec("yard")])
    supervisor.open_demand_socket()
    import socket

    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.sendto(b"<190>Nov 23 10:15:02 demand: porch", str(tmp_path / "demand.sock"))
    sender.sendto(b"<190>Nov 23 10:15:02 demand: yard", str(tmp_path / "demand.sock"))
    sender.close()
    supervisor.read_demand(100.0)
    porch, yard = supervisor.cameras
    assert porch.demand_until == 160.0 and yard.demand_until == 0.0, "only on-demand cameras listen"


def test_metrics_are_prometheus_text(tmp_path):
    supervisor = make_supervisor(tmp_path, [camera_spec("cam0"), camera_spec("cam1")], max_sessions=1)
    supervisor.assign(0.0)
    go_live(supervisor, supervisor.cameras[0], 1.0)
    supervisor.write_status(2.0)
    text = (tmp_path / "metrics.prom").read_text()
    assert 'pi_stream_camera_up{camera="cam0"} 1' in text and 'pi_stream_camera_up{camera="cam1"} 0' in text
    assert 'pi_stream_nvr_sessions_in_use{nvr="shed"} 1' in text and 'pi_stream_nvr_cameras_waiting{nvr="shed"} 1' in text
    assert 'pi_stream_camera_state{camera="cam1",state="waiting"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.count(" ") == 1, line


@pytest.mark.parametrize("keep_days", [1, 7])
def test_retention_deletes_old_days_and_nothing_else(tmp_path, keep_days):
    base = tmp_path / "snapshots" / "site" / "cam"
    today = datetime.date(2026, 11, 23)
    days = [today - datetime.timedelta(days=n) for n in range(10)]
    for day in days:
        (base / day.isoformat()).mkdir(parents=True)
        (base / day.isoformat() / "101500.jpg").write_bytes(b"jpg")
    others = [base / "notes", base / "2026-13-99", base / "latest.jpg"]
    others[0].mkdir()
    others[1].mkdir()
    others[2].write_bytes(b"jpg")
    outside = tmp_path / "snapshots" / "site" / "2026-01-01"
    outside.mkdir()
    config = {"cameras": [{**camera_spec("cam"), "snapshot_dir": str(base), "snapshot_keep_days": keep_days}]}
    removed = capture.clean(config, today, log=lambda _: None)
    kept = sorted(p.name for p in base.iterdir())
    expected_days = [d.isoformat() for d in days if d >= today - datetime.timedelta(days=keep_days)]
    assert kept == sorted(expected_days + ["2026-13-99", "latest.jpg", "notes"])
    assert len(removed) == 10 - len(expected_days)
    assert outside.exists(), "only dated directories directly under a camera's own directory"


def test_retention_keeps_going_past_a_directory_it_cannot_remove(tmp_path, monkeypatch):
    base = tmp_path / "cam"
    for day in ("2020-01-01", "2020-01-02"):
        (base / day).mkdir(parents=True)
    real_rmtree = capture.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if path.endswith("2020-01-01"):
            raise PermissionError(13, "Permission denied", path)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(capture.shutil, "rmtree", rmtree)
    config = {"cameras": [{**camera_spec("cam"), "snapshot_dir": str(base), "snapshot_keep_days": 1}]}
    lines = []
    with pytest.raises(capture.CleanError):
        capture.clean(config, datetime.date(2026, 11, 23), log=lines.append)
    assert sorted(p.name for p in base.iterdir()) == ["2020-01-01"]
    assert any("cannot remove" in line and "Permission denied" in line for line in lines)
