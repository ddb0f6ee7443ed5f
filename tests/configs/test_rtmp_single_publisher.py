"""One publisher per camera (security review #11): nginx as rendered refuses a second publisher of a stream while
the first runs, however the connections fall, keeps the camera's HLS to the first encoder's, and lets the capture
unit's restart in once the first is gone (crashed, or hung and dropped as idle).

nginx-rtmp keeps its table of streams per worker: with two workers a second publisher that lands in the other one
is accepted, and both write the same playlist and segments (why nginx.conf runs one worker). Real nginx and ffmpeg
on a free loopback port, under a temporary root; the http block is left out (it listens on every address)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import EXAMPLE_SITES, wait_until
from tests.configs.tree import install_tree

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
CAMERA = "testcam"  # the example testsrc-https's one camera
FIRST_SIZE, SECOND_SIZE = "320x180", "640x360"
# A second encoder's timeline, far from the first's (seen on a Pi: 967 s, then 95694 s inside one segment).
SECOND_OFFSET_SECONDS = 90000
REFUSED = "Already publishing"


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/install.sh (CI installs them)")
    assert RTMP_MODULE.exists(), "libnginx-mod-rtmp is not installed"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("example", sorted(EXAMPLE_SITES))
def test_every_host_runs_one_nginx_worker(make_site, example):
    """The guarantee below holds because nginx has one worker, whatever the host's cores (a Pi or a relay)."""
    for host, files in render_site(load_site(make_site(example))).items():
        conf = files["etc/nginx/nginx.conf"].content.decode()
        assert re.findall(r"^worker_processes .*$", conf, re.M) == ["worker_processes 1;"], host


def rtmp_ingest_conf(root: Path, port: int) -> Path:
    """The installed nginx.conf with its worker count and RTMP ingest as rendered, made to run here: workers as
    root (the temporary root is private), the RTMP port moved to `port` on loopback, no http block."""
    conf = root / "etc/nginx/nginx.conf"
    text = conf.read_text().replace("user www-data;", "user root;")
    assert "\nhttp {" in text
    conf.write_text(text[: text.index("\nhttp {")] + "\n")
    rtmp = root / "etc/nginx/pi-stream/rtmp.conf"
    listen = "listen 127.0.0.1:1935;"
    assert listen in rtmp.read_text()
    rtmp.write_text(rtmp.read_text().replace(listen, f"listen 127.0.0.1:{port};"))
    for sub in ("var/log/nginx", "var/lib/nginx", "run/pi-stream/hls"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return conf


class Ingest:
    """nginx's RTMP ingest from one rendered tree, and the ffmpeg publishers sent to it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"rtmp://127.0.0.1:{port}/live/{CAMERA}"
        self.playlist = root / "run/pi-stream/hls" / CAMERA / "index.m3u8"
        self.publishers: list[subprocess.Popen] = []

    def publish(self, size: str = FIRST_SIZE, offset: int = 0, seconds: float | None = None) -> subprocess.Popen:
        """A capture unit's kind of publisher: testsrc, x264 with a keyframe every second, FLV over RTMP."""
        argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi",
                "-i", f"testsrc=size={size}:rate=10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10"]
        argv += ["-t", str(seconds)] if seconds else []
        argv += ["-output_ts_offset", str(offset)] if offset else []
        process = subprocess.Popen([*argv, "-f", "flv", self.url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.publishers.append(process)
        return process

    def second_publishers(self, count: int) -> list[tuple[int, str]]:
        """`count` publishers of the same camera at once (so they spread over workers, if there are several), each
        for 3 s at most: (exit status, stderr) of each."""
        processes = [self.publish(SECOND_SIZE, SECOND_OFFSET_SECONDS, seconds=3) for _ in range(count)]
        results = []
        for process in processes:
            _, stderr = process.communicate(timeout=30)
            results.append((process.returncode, stderr.strip()))
        return results

    def media_sequence(self) -> int:
        try:
            text = self.playlist.read_text()
        except FileNotFoundError:
            return -1
        found = re.search(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", text, re.M)
        return int(found.group(1)) if found else -1

    def segments(self) -> dict[str, bytes]:
        """The playlist's segments as they are now (a segment cleaned up meanwhile is left out)."""
        found = {}
        for name in re.findall(r"^[^#\s]\S*\.ts$", self.playlist.read_text(), re.M):
            with suppress(FileNotFoundError):
                found[name] = (self.playlist.parent / name).read_bytes()
        return found


@contextmanager
def running_ingest(make_site, root: Path) -> Iterator[Ingest]:
    need("nginx", "ffmpeg", "ffprobe")
    install_tree(make_site, "testsrc-https", root)
    port = free_port()
    conf = rtmp_ingest_conf(root, port)
    ingest = Ingest(root, port)
    subprocess.run(["nginx", "-c", str(conf)], check=True, capture_output=True, timeout=30)
    try:
        wait_until(lambda: port_open(port), "nginx's RTMP port", seconds=10, interval=0.05)
        yield ingest
    finally:
        for process in ingest.publishers:
            if process.poll() is None:
                process.kill()  # also ends a stopped (SIGSTOP) one
                process.wait(timeout=10)
        subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], capture_output=True, timeout=30)
        wait_until(lambda: not port_open(port), "nginx to stop", seconds=10, interval=0.05)


def probe(segment: bytes) -> tuple[set[int], list[float]]:
    """A segment's video widths and packet timestamps (s), from ffprobe."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width:packet=pts_time",
         "-of", "json", "-i", "pipe:0"],
        input=segment, capture_output=True, timeout=30, check=True,
    )
    found = json.loads(result.stdout)
    widths = {stream["width"] for stream in found.get("streams", [])}
    return widths, [float(packet["pts_time"]) for packet in found.get("packets", []) if "pts_time" in packet]


def assert_first_encoders_only(segments: dict[str, bytes]) -> None:
    """Every segment holds the first encoder's picture size, and timestamps only go forward, on its timeline."""
    assert len(segments) >= 3, f"too few segments to judge: {sorted(segments)}"
    last = -1.0
    for name in sorted(segments, key=lambda n: int(Path(n).stem)):  # hls_fragment_naming sequential
        widths, stamps = probe(segments[name])
        assert widths == {int(FIRST_SIZE.split("x")[0])}, f"{name}: picture widths {widths}"
        assert stamps and max(stamps) < SECOND_OFFSET_SECONDS / 2, f"{name}: timestamps {min(stamps)}..{max(stamps)} s"
        # Within a segment, B-frames aside (x264 ultrafast has none), and across segments: forward only.
        assert stamps == sorted(stamps) and stamps[0] > last, f"{name}: timestamps go back ({last} -> {stamps[:3]}...)"
        last = stamps[-1]


def test_a_second_publisher_is_refused_while_the_first_runs_and_a_restart_gets_in(make_site, short_root):
    with running_ingest(make_site, short_root) as ingest:
        first = ingest.publish()
        wait_until(lambda: ingest.media_sequence() >= 1, "the first publisher's HLS", seconds=30, interval=0.2)

        segments: dict[str, bytes] = {}
        for attempt in range(3):  # 3 rounds of 4 at once: 12 second publishers, about 1 s each when refused
            results = ingest.second_publishers(4)
            assert all(status != 0 and REFUSED in stderr for status, stderr in results), (
                f"round {attempt + 1}: a second publisher was not refused: {results}")
            assert first.poll() is None, f"the first publisher was thrown out: {first.communicate(timeout=10)[1]}"
            segments.update(ingest.segments())
        # And what was written while they tried, once it is in the playlist.
        sequence = ingest.media_sequence()
        wait_until(lambda: ingest.media_sequence() >= sequence + 2, "two more segments", seconds=15, interval=0.2)
        segments.update(ingest.segments())
        assert_first_encoders_only(segments)

        # The first one crashes (its connection closes): the capture unit's restart is let in at once.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        restart = ingest.publish(seconds=3)
        _, stderr = restart.communicate(timeout=30)
        assert restart.returncode == 0 and REFUSED not in stderr, f"the restart was refused: {stderr}"


def test_a_hung_publisher_is_dropped_so_the_restart_gets_in(make_site, short_root):
    """A hung ffmpeg keeps its connection open: drop_idle_publisher (10 s on a Pi) lets its restart in."""
    with running_ingest(make_site, short_root) as ingest:
        hung = ingest.publish()
        wait_until(lambda: ingest.media_sequence() >= 0, "the first publisher's HLS", seconds=30, interval=0.2)
        hung.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        refusals = 0
        while time.monotonic() - stopped < 25:  # the idle timeout, and as long again
            restart = ingest.publish(seconds=2)
            _, stderr = restart.communicate(timeout=30)
            if restart.returncode == 0 and REFUSED not in stderr:
                break
            assert REFUSED in stderr, f"the restart failed otherwise: {stderr}"
            refusals += 1
            time.sleep(1)
        else:
            pytest.fail(f"a hung publisher still held the camera 25 s on ({refusals} restarts refused)")
        took = time.monotonic() - stopped
        assert refusals >= 1 and took >= 5, f"let in after {took:.1f} s, {refusals} refusals: the hung one was not holding it"
