"""Start, steer and read the fake consumer NVR (fake_nvr.py) from tests and benchmarks.

    with fake_nvr([], "127.0.0.1", 0, channels=4, max_sessions=2, directory=tmp_path) as nvr:
        url = nvr.url(1)                      # rtsp://127.0.0.1:<port>/ip1/0
        ...
        assert nvr.stats().channels[1].connections == 1

The server itself runs under Debian's /usr/bin/python3, the only Python with
gst-rtsp-server's `gi` bindings; this side runs in the project's venv and only
starts it (as a lab process: own session, output to a log file, see procs.py)
and talks to its control socket (newline JSON, documented in fake_nvr.py).
`exec_prefix` runs it elsewhere, e.g. `["ip", "netns", "exec", NS]` in a lab
network namespace; the control socket is a file, so it works across namespaces.
Starting, waiting and stopping are fakes.ControlledFake's, shared with the fake DVR.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pi_stream.errors import LabError
from pi_stream.lab.fakes import ControlledFake

SCRIPT = Path(__file__).with_name("fake_nvr.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's: the venv's Python has no gi


@dataclass(frozen=True)
class Counts:
    """One bucket of counters (a channel, "unattributed" or the total); fake_nvr.py says what each counts."""

    connections: int = 0
    refused: int = 0
    unauthorized: int = 0
    bad_credentials: int = 0
    plays: int = 0
    dropped: int = 0
    open: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


@dataclass(frozen=True)
class Event:
    """One TCP client: when it connected, where it went, and how it ended (so far)."""

    time: float
    client: int
    address: str
    channel: int | None
    outcome: str  # "accepted" | "refused"
    reason: str | None  # None | "limit" | "outage"
    closed: float | None
    plays: int
    unauthorized: int
    dropped: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class NvrStats:
    time: float
    port: int
    max_sessions: int
    outage_remaining: float
    sessions: int  # RTSP sessions in gst's pool: a client that vanished without TEARDOWN keeps one ~65 s
    total: Counts
    channels: dict[int, Counts]
    unattributed: Counts
    events: tuple[Event, ...]
    events_lost: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NvrStats:
        return cls(
            time=float(data["time"]),
            port=int(data["port"]),
            max_sessions=int(data["max_sessions"]),
            outage_remaining=float(data["outage_remaining"]),
            sessions=int(data["sessions"]),
            total=Counts.from_json(data["total"]),
            channels={int(number): Counts.from_json(counts) for number, counts in data["channels"].items()},
            unattributed=Counts.from_json(data["unattributed"]),
            events=tuple(Event.from_json(event) for event in data["events"]),
            events_lost=int(data["events_lost"]),
        )

    def attempts(self, channel: int | None = None, since: float = 0.0, outcome: str | None = None) -> int:
        """Connections since `since` (epoch s), on one channel or all: what a backoff test counts in a window."""
        return sum(
            1
            for event in self.events
            if event.time >= since and (channel is None or event.channel == channel) and (outcome is None or event.outcome == outcome)
        )


class FakeNvr(ControlledFake):
    """One fake NVR process; use it as a context manager (or call stop()) so it never outlives the test."""

    label = "fake NVR"
    stem = "fake_nvr"
    program = "python3"

    def __init__(
        self,
        exec_prefix: Sequence[str],
        address: str,
        port: int,
        channels: int,
        max_sessions: int,
        username: str | None,
        password: str | None,
        h265_channels: Iterable[int],
        directory: Path,
        auth_method: str = "digest",
        size: str = "320x180",
        fps: int = 10,
    ) -> None:
        if (username is None) != (password is None):
            raise LabError("fake NVR: give both a username and a password, or neither")
        super().__init__(exec_prefix, directory, password)
        self.address = address
        self.port = port  # 0 until start() when the OS picks it
        self.channels = channels
        self.max_sessions = max_sessions
        self.username = username
        self.h265_channels = sorted(set(h265_channels))
        self.auth_method = auth_method
        self.size = size
        self.fps = fps

    # ------------------------------------------------------------ life cycle

    def argv(self) -> list[str]:
        argv = [
            *self.exec_prefix,
            SYSTEM_PYTHON,
            str(SCRIPT),
            "--listen", self.address,
            "--port", str(self.port),
            "--channels", str(self.channels),
            "--max-sessions", str(self.max_sessions),
            "--control", str(self.control_path),
            "--size", self.size,
            "--fps", str(self.fps),
        ]  # fmt: skip
        if self.h265_channels:
            argv += ["--h265-channels", ",".join(str(number) for number in self.h265_channels)]
        if self.username is not None:
            # The password goes in a 0600 file: argv is world-readable in /proc and ends up in error messages.
            argv += ["--username", self.username, "--password-file", str(self.password_file)]
            argv += ["--auth-method", self.auth_method]
        return argv

    def _started(self) -> None:
        if self.port == 0:
            self.port = self.stats().port

    # ------------------------------------------------------------ what clients use

    def url(self, channel: int, host: str | None = None, username: str | None = None, password: str | None = None) -> str:
        """rtsp://[user:password@]host:port/ipN/0; host defaults to the listen address (127.0.0.1 for 0.0.0.0)."""
        host = host or ("127.0.0.1" if self.address in ("0.0.0.0", "") else self.address)
        userinfo = f"{quote(username, safe='')}:{quote(password or '', safe='')}@" if username is not None else ""
        return f"rtsp://{userinfo}{host}:{self.port}/ip{channel}/0"

    # ------------------------------------------------------------ control API

    def stats(self, since: float | None = None) -> NvrStats:
        """Counters and, with `since` (epoch s), only the connection events from then on."""
        request: dict[str, Any] = {"cmd": "stats"}
        if since is not None:
            request["since"] = since
        return NvrStats.from_json(self._call(request))

    def drop(self, channel: int | None = None) -> int:
        """Close the connections of one channel's clients (all channels with None); returns how many.

        ffmpeg reading such a stream takes the closed connection for its end and exits with status 0.
        """
        return int(self._call({"cmd": "drop", "channel": channel})["closed"])

    def outage(self, seconds: float) -> int:
        """Drop every client and refuse all new ones for `seconds` (0 ends an outage); returns how many were dropped."""
        return int(self._call({"cmd": "outage", "seconds": seconds})["closed"])

    def set_limit(self, max_sessions: int) -> None:
        """Change --max-sessions at runtime (0 = unlimited); clients already open stay."""
        self._call({"cmd": "limit", "max_sessions": max_sessions})
        self.max_sessions = max_sessions

    def reset(self) -> None:
        """Zero the counters and forget the events; `open` keeps counting the clients still connected."""
        self._call({"cmd": "reset"})


@contextlib.contextmanager
def fake_nvr(
    exec_prefix: Sequence[str],
    address: str,
    port: int,
    channels: int,
    max_sessions: int,
    username: str | None,
    password: str | None,
    h265_channels: Iterable[int],
    directory: Path,
    **options: Any,
) -> Iterator[FakeNvr]:
    """A running fake NVR for the `with` block, stopped on the way out whatever happened.

    port 0 lets the OS pick a free one (then read `nvr.port`); `options` are
    FakeNvr's auth_method ("digest" or "basic"), size ("320x180") and fps (10).
    """
    nvr = FakeNvr(exec_prefix, address, port, channels, max_sessions, username, password, h265_channels, directory, **options)
    nvr.start()
    try:
        yield nvr
    finally:
        nvr.stop()
