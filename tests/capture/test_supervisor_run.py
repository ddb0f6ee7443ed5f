"""The capture supervisor with real ffmpeg against the fake NVR on loopback (no lab, ~40 s).

The rendered capture.json is used as it is, except that the live FLV goes to
/dev/null instead of nginx-rtmp: that part is the lab's (tests/lab/test_nvr.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pi_stream.lab.capture_run import RenderedCapture, SupervisorProcess, render_capture
from tests.conftest import wait_until

GI_CHECK = ["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"]
NVR_USER, NVR_PASSWORD = "admin", "nvr p@ss:word"


@pytest.fixture(scope="module")
def nvr(tmp_path_factory):
    if subprocess.run(GI_CHECK, capture_output=True, timeout=30).returncode != 0:
        pytest.fail("gst-rtsp-server's Python bindings are missing: run scripts/install.sh")
    from pi_stream.lab.nvr import fake_nvr

    with fake_nvr([], "127.0.0.1", 0, 4, 2, NVR_USER, NVR_PASSWORD, [4], tmp_path_factory.mktemp("nvr")) as server:
        yield server


def supervisor_files(tmp_path: Path, nvr, cameras: list[dict], max_sessions: int, storage: dict | None = None) -> RenderedCapture:
    """A site on the fake NVR, rendered as the Pi gets it (pi_stream.lab.capture_run)."""
    site = {
        "name": "depot",
        "nvrs": {
            "shed": {
                "host": "127.0.0.1", "port": nvr.port, "username": NVR_USER, "password": NVR_PASSWORD,
                "path_template": "/ip{channel}/0", "max_sessions": max_sessions,
            }
        },
        "storage": {"snapshots_path": str(tmp_path / "storage"), **(storage or {})},
        "capture": {"retry_first_seconds": 2, "stall_seconds": 10},
        "cameras": cameras,
    }  # fmt: skip
    return render_capture(tmp_path, site)


def read_status(runtime: Path) -> dict:
    try:
        return json.loads((runtime / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def states(runtime: Path) -> dict[str, str]:
    return {c["camera"]: c["state"] for c in read_status(runtime).get("cameras", [])}


def camera(name: str, channel: int, **extra) -> dict:
    return {"name": name, "source": {"type": "rtsp", "nvr": "shed", "channel": channel}, **extra}


def test_budget_one_session_per_camera_snapshots_and_a_dropped_channel(nvr, tmp_path):
    nvr.reset()
    cameras = [
        camera("dock", 1, priority=90, snapshots={"interval_seconds": 2, "keep_days": 1}),
        camera("yard", 2, priority=60, snapshots={"interval_seconds": 2, "keep_days": 1}),
        camera("gate", 3, priority=10),
    ]
    rendered = supervisor_files(tmp_path, nvr, cameras, max_sessions=2)
    runtime = rendered.runtime
    supervisor = SupervisorProcess(rendered, tmp_path / "supervisor.log").start()
    try:
        wait_until(lambda: states(runtime) == {"dock": "live", "yard": "live", "gate": "waiting"}, "dock and yard live, gate waiting", 40)
        status = read_status(runtime)
        gate = next(c for c in status["cameras"] if c["camera"] == "gate")
        assert "2 of 2 sessions" in gate["detail"] and gate["sessions_opened"] == 0
        assert status["nvrs"] == [{"name": "shed", "max_sessions": 2, "sessions_in_use": 2, "waiting": ["gate"]}]
        dock = next(c for c in status["cameras"] if c["camera"] == "dock")
        assert dock["codec"] == "h264" and dock["fps"] and dock["bitrate_kbps"]

        series = tmp_path / "storage" / "depot" / "dock"
        wait_until(lambda: len(list(series.glob("*/*.thumb.jpg"))) >= 3, "three snapshots with thumbnails in the series", 30)
        frames = sorted(series.glob("*/[0-9]*.jpg"))
        assert all(f.with_name(f.name.replace(".jpg", ".thumb.jpg")).exists() for f in frames if ".thumb" not in f.name)
        thumb = sorted(series.glob("*/*.thumb.jpg"))[0]
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", str(thumb)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert probe.stdout.strip() == "320,180"
        assert (runtime / "snapshots" / "dock" / "latest.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert not list((runtime / "snapshots" / "dock").glob("snap-*")), "numbered frames are filed, not kept"

        stats = nvr.stats()
        assert (stats.channels[1].connections, stats.channels[2].connections, stats.channels[3].connections) == (1, 1, 0)
        assert stats.total.refused == 0 and stats.total.unauthorized <= 2, "digest auth: one 401 challenge per session"

        nvr.drop(1)
        wait_until(lambda: states(runtime).get("dock") == "backing_off", "dock backing off after the drop", 20)
        wait_until(lambda: states(runtime).get("dock") == "live", "dock live again", 30)
        assert nvr.stats().channels[1].connections == 2, "one reconnection, no burst"
        assert states(runtime)["gate"] == "waiting", "the dropped camera kept its session slot while it backed off"
    finally:
        took = supervisor.stop()
    assert took < 15
    log = (tmp_path / "supervisor.log").read_text()
    assert NVR_PASSWORD not in log and "p%40ss" not in json.dumps(read_status(runtime))
    assert subprocess.run(["pgrep", "-f", str(rendered.config_path)], capture_output=True, timeout=10).returncode == 1, "no ffmpeg left"


def test_h265_channel_is_named_and_a_wrong_password_is_not_retried(nvr, tmp_path):
    nvr.reset()
    cameras = [camera("attic", 4), camera("dock", 1)]
    rendered = supervisor_files(tmp_path, nvr, cameras, max_sessions=2)
    runtime = rendered.runtime
    sources = json.loads((rendered.credentials / "sources").read_text())
    sources["dock"] = sources["dock"].replace("word@", "wrong@")
    (rendered.credentials / "sources").write_text(json.dumps(sources))
    supervisor = SupervisorProcess(rendered, tmp_path / "supervisor.log").start()
    try:
        wait_until(lambda: states(runtime) == {"attic": "disabled", "dock": "disabled"}, "both disabled", 40)
        status = {c["camera"]: c for c in read_status(runtime)["cameras"]}
        assert status["attic"]["codec"] == "hevc" and "H.265" in status["attic"]["detail"]
        assert "401" in status["dock"]["detail"] and status["dock"]["sessions_opened"] == 1
        time.sleep(6)
        assert nvr.stats().channels[1].connections == 1, "no retry of a refused password before the re-probe"
    finally:
        supervisor.stop()


def test_transcoded_h265_goes_live_and_recording_writes_playable_segments(nvr, tmp_path):
    nvr.reset()
    cameras = [
        camera("attic", 4, transcode=True, width=320, height=180, fps=10),
        camera("dock", 1, recording={"enabled": True, "segment_seconds": 10, "keep_days": 1}),
    ]
    recordings = tmp_path / "recordings"
    recordings.mkdir()  # the camera_capture role makes it on the Pi
    rendered = supervisor_files(
        tmp_path, nvr, cameras, max_sessions=2, storage={"recordings_path": str(recordings), "recordings_on_root_fs": True}
    )
    runtime = rendered.runtime
    supervisor = SupervisorProcess(rendered, tmp_path / "supervisor.log").start()
    try:
        wait_until(lambda: states(runtime) == {"attic": "live", "dock": "live"}, "both live", 40)
        attic = next(c for c in read_status(runtime)["cameras"] if c["camera"] == "attic")
        assert attic["codec"] == "hevc", "the source's codec, re-encoded to H.264 for the live output"
        segments = recordings / "depot" / "dock"
        wait_until(lambda: len(list(segments.glob("*/*.mp4"))) >= 2, "two recorded segments", 40)
        first = sorted(segments.glob("*/*.mp4"))[0]
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json", str(first)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        info = json.loads(probe.stdout)
        assert info["streams"][0]["codec_name"] == "h264" and float(info["format"]["duration"]) > 1
        assert nvr.stats().channels[1].connections == 1, "recording shares the camera's one session"
    finally:
        supervisor.stop()
