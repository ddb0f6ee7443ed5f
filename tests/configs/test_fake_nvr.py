"""The fake NVR (pi_stream/lab/fake_nvr.py) against real ffprobe and ffmpeg, without the lab.

It runs in the host's namespace on 127.0.0.1 with a port the OS picks; every
wait is bounded. The lab and appliance tests rely on what is pinned here: one
count per TCP client and channel, refusals that make ffmpeg fail at once, drops
and outages that end a player, 401s counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pi_stream.errors import LabError
from pi_stream.lab.nvr import SYSTEM_PYTHON, FakeNvr, fake_nvr
from tests.conftest import wait_until

GI_PROBE = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
FFPROBE = ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "5000000", "-show_entries", "stream=codec_name", "-of", "json"]
PLAY_SECONDS = 30  # each player stops by itself after this much media, should a test fail to kill it


def gi_problem() -> str | None:
    """Why /usr/bin/python3 cannot run the fake NVR, or None if it can."""
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", GI_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


PROBLEM = gi_problem()
if PROBLEM and not os.environ.get("CI"):
    pytest.skip(
        f"{SYSTEM_PYTHON} lacks gst-rtsp-server's bindings ({PROBLEM}); scripts/install.sh installs them",
        allow_module_level=True,
    )


@pytest.fixture(autouse=True)
def _tools() -> None:
    if PROBLEM:  # on CI: install.sh must have installed them, so a skip would hide a broken install
        pytest.fail(f"{SYSTEM_PYTHON} lacks gst-rtsp-server's bindings ({PROBLEM}) although scripts/install.sh ran")
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/install.sh (CI installs them)")


@pytest.fixture
def start_nvr(tmp_path: Path):
    """Start fake NVRs on 127.0.0.1 and any free port; all are stopped after the test."""
    numbers = itertools.count(1)
    with contextlib.ExitStack() as stack:

        def start(channels: int = 2, max_sessions: int = 0, username=None, password=None, h265_channels=(), **options) -> FakeNvr:
            directory = tmp_path / f"nvr{next(numbers)}"
            return stack.enter_context(
                fake_nvr([], "127.0.0.1", 0, channels, max_sessions, username, password, h265_channels, directory, **options)
            )

        yield start


@pytest.fixture
def play(tmp_path: Path):
    """Start ffmpeg players that copy a stream to nowhere (like the appliance's capture); all are killed after the test."""
    players: list[subprocess.Popen] = []

    def start(url: str) -> subprocess.Popen:
        log = open(tmp_path / f"ffmpeg{len(players)}.log", "wb")  # noqa: SIM115 - the child keeps it; closed below
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "5000000", "-i", url]
        process = subprocess.Popen(
            [*argv, "-t", str(PLAY_SECONDS), "-c", "copy", "-f", "null", "-"], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        players.append(process)
        return process

    yield start
    for process in players:
        process.kill()
        process.wait(timeout=10)


def probe(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FFPROBE, url], capture_output=True, text=True, timeout=30)


def codecs(url: str) -> list[str]:
    result = probe(url)
    assert result.returncode == 0, f"ffprobe {url} failed: {result.stderr}"
    return [stream["codec_name"] for stream in json.loads(result.stdout)["streams"]]


def test_channels_serve_h264_and_hevc_and_count_per_channel(start_nvr):
    nvr = start_nvr(channels=3, h265_channels=[3])
    assert nvr.port > 0
    assert codecs(nvr.url(1)) == ["h264"]
    assert codecs(nvr.url(3)) == ["hevc"]

    wait_until(lambda: nvr.stats().total.open == 0, "both probes' connections to close", 10)
    stats = nvr.stats()
    assert (stats.channels[1].connections, stats.channels[1].plays) == (1, 1)
    assert (stats.channels[3].connections, stats.channels[3].plays) == (1, 1)
    assert stats.channels[2].connections == 0
    assert (stats.total.connections, stats.total.refused, stats.unattributed.connections) == (2, 0, 0)
    assert [(event.channel, event.outcome) for event in stats.events] == [(1, "accepted"), (3, "accepted")]
    assert all(event.closed for event in stats.events)
    assert stats.attempts(channel=3) == 1
    assert nvr.stats(since=time.time() + 60).events == ()


def test_a_third_client_past_the_limit_is_refused_while_two_keep_playing(start_nvr, play):
    nvr = start_nvr(channels=3, max_sessions=2)
    first, second = play(nvr.url(1)), play(nvr.url(2))
    wait_until(lambda: nvr.stats().total.plays == 2, "two players to PLAY", 20)

    started = time.monotonic()
    result = probe(nvr.url(3))
    assert result.returncode != 0
    assert time.monotonic() - started < 5, "a refused client should fail at once, like on a real NVR"
    wait_until(lambda: nvr.stats().channels[3].refused == 1, "the refusal to be counted on channel 3", 10)
    stats = nvr.stats()
    assert (stats.total.connections, stats.total.refused, stats.total.open) == (3, 1, 2)
    assert (stats.channels[3].connections, stats.channels[3].plays) == (1, 0)
    refused = [event for event in stats.events if event.outcome == "refused"]
    assert [(event.channel, event.reason) for event in refused] == [(3, "limit")]
    assert first.poll() is None and second.poll() is None, "the two clients within the limit must keep playing"

    nvr.set_limit(3)
    assert codecs(nvr.url(3)) == ["h264"]
    assert nvr.stats().max_sessions == 3


def test_drop_ends_the_client_of_one_channel_only(start_nvr, play):
    nvr = start_nvr(channels=2)
    first, second = play(nvr.url(1)), play(nvr.url(2))
    wait_until(lambda: nvr.stats().total.plays == 2, "two players to PLAY", 20)

    assert nvr.drop(1) == 1
    # ffmpeg takes the closed connection for the end of the stream: it exits, with status 0.
    first.wait(timeout=15)
    assert second.poll() is None
    wait_until(lambda: nvr.stats().total.open == 1, "the dropped connection to close", 10)
    stats = nvr.stats()
    assert (stats.channels[1].dropped, stats.channels[2].dropped, stats.total.dropped) == (1, 0, 1)
    assert [event.channel for event in stats.events if event.dropped] == [1]
    with pytest.raises(LabError, match="no channel 9"):
        nvr.drop(9)

    nvr.reset()
    stats = nvr.stats()
    assert (stats.total.connections, stats.total.plays, stats.events) == (0, 0, ())
    assert stats.total.open == 1, "reset keeps counting the clients still connected"


def test_outage_drops_and_refuses_everyone_then_serves_again(start_nvr, play):
    nvr = start_nvr(channels=2)
    player = play(nvr.url(1))
    wait_until(lambda: nvr.stats().total.plays == 1, "the player to PLAY", 20)

    assert nvr.outage(60) == 1
    player.wait(timeout=15)
    assert probe(nvr.url(2)).returncode != 0
    wait_until(lambda: nvr.stats().channels[2].refused == 1, "the refusal to be counted on channel 2", 10)
    stats = nvr.stats()
    assert stats.outage_remaining > 50
    assert [(event.channel, event.reason) for event in stats.events if event.outcome == "refused"] == [(2, "outage")]

    nvr.outage(0)
    assert codecs(nvr.url(2)) == ["h264"]

    nvr.outage(1)
    assert probe(nvr.url(1)).returncode != 0
    wait_until(lambda: nvr.stats().outage_remaining == 0, "a 1 s outage to end by itself", 10)
    assert codecs(nvr.url(1)) == ["h264"]
    assert nvr.stats().total.refused == 2


@pytest.mark.parametrize("method", ["digest", "basic"])
def test_a_wrong_password_gets_401_and_is_counted(start_nvr, method):
    password = "s3cret:/@x"  # characters that must be escaped in the URL
    nvr = start_nvr(channels=1, username="admin", password=password, auth_method=method)
    assert codecs(nvr.url(1, username="admin", password=password)) == ["h264"]
    counts = nvr.stats().channels[1]
    assert (counts.unauthorized, counts.bad_credentials, counts.plays) == (1, 0, 1), "one challenge, then served"

    result = probe(nvr.url(1, username="admin", password="wrong"))
    assert result.returncode != 0
    assert "401" in result.stderr
    counts = nvr.stats().channels[1]
    assert (counts.unauthorized, counts.bad_credentials, counts.plays) == (3, 1, 1)
    assert "s3cret" not in " ".join(nvr.argv()), "the password goes through a file, not the command line"
