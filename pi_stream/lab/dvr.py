"""Start, steer and read the fake Hikvision-style DVR (fake_dvr.py) from tests.

    with fake_dvr([], "127.0.0.1", 0, 0, "admin", "secret", tmp_path) as dvr:
        requests.get(dvr.url("/doc/page/login.asp"))       # http://127.0.0.1:<http_port>/doc/page/login.asp
        ...
        assert dvr.stats().logins.ok == 1

The server runs with this very interpreter (the venv's: it has `websockets`) as
a lab process (own session, output to a log file, see procs.py); starting,
waiting for "ready" and stopping are fakes.ControlledFake's, shared with the
fake NVR. `exec_prefix` runs it elsewhere, e.g. `["ip", "netns", "exec", NS]`
in a lab network namespace; the control socket is a file, so it works across
namespaces. The control protocol and what is counted are documented in fake_dvr.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from pi_stream.lab.fakes import ControlledFake

MODULE = "pi_stream.lab.fake_dvr"
# The directory that holds the pi_stream package (the checkout, or site-packages): put on the fake's
# PYTHONPATH, so `-m` finds the module whatever the cwd and whether or not the project is installed.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

Seen = TypeVar("Seen", bound="SeenByDvr")


@dataclass(frozen=True, kw_only=True)
class SeenByDvr:
    """What the DVR saw of a client, on a request or a WebSocket: header values are None when it sent none."""

    host: str | None
    x_forwarded_for: str | None
    x_forwarded_proto: str | None
    cookies: tuple[str, ...]  # names only

    @classmethod
    def from_json(cls: type[Seen], data: dict[str, Any]) -> Seen:
        """The record from its JSON object; the cookie names become a tuple, so the record stays hashable."""
        values = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**{**values, "cookies": tuple(values["cookies"] or ())})


@dataclass(frozen=True, kw_only=True)
class DvrRequest(SeenByDvr):
    """One HTTP request as the DVR saw it."""

    time: float
    method: str
    path: str  # without the query string
    status: int


@dataclass(frozen=True, kw_only=True)
class DvrWebSocket(SeenByDvr):
    """One video WebSocket connection; `frames` counts from the last reset for one still open then."""

    id: int
    path: str  # with its query string, e.g. /websocket/stream?channel=1
    opened: float
    closed: float | None
    frames: int
    open: bool


@dataclass(frozen=True)
class Logins:
    ok: int
    failed: int


@dataclass(frozen=True)
class DvrStats:
    http_port: int
    ws_port: int
    requests: dict[str, int]  # path -> count since the last reset
    recent: tuple[DvrRequest, ...]  # the last 500 requests
    logins: Logins  # userCheck answers: 200 and 401
    websockets: tuple[DvrWebSocket, ...]  # the last 500 connections (a reset keeps only the open ones)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DvrStats:
        return cls(
            http_port=int(data["http_port"]),
            ws_port=int(data["ws_port"]),
            requests={str(path): int(count) for path, count in data["requests"].items()},
            recent=tuple(DvrRequest.from_json(record) for record in data["recent"]),
            logins=Logins(ok=int(data["logins"]["ok"]), failed=int(data["logins"]["failed"])),
            websockets=tuple(DvrWebSocket.from_json(record) for record in data["websockets"]),
        )

    @property
    def open_websockets(self) -> tuple[DvrWebSocket, ...]:
        return tuple(record for record in self.websockets if record.open)


class FakeDvr(ControlledFake):
    """One fake DVR process; use it as a context manager (or call stop()) so it never outlives the test."""

    label = "fake DVR"
    stem = "fake_dvr"
    program = Path(sys.executable).name

    def __init__(
        self,
        exec_prefix: Sequence[str],
        address: str,
        http_port: int,
        ws_port: int,
        username: str,
        password: str,
        directory: Path,
        frame_bytes: int = 4096,
        fps: int = 25,
        static_kib: int = 1024,
    ) -> None:
        super().__init__(exec_prefix, directory, password)
        self.address = address
        self.http_port = http_port  # 0 until start() when the OS picks it
        self.ws_port = ws_port  # likewise
        self.username = username
        self.frame_bytes = frame_bytes
        self.fps = fps
        self.static_kib = static_kib

    def argv(self) -> list[str]:
        python_path = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]))
        return [
            *self.exec_prefix,
            "env", f"PYTHONPATH={python_path}",  # procs.spawn takes no environment; env(1) passes it through `ip netns exec`
            sys.executable, "-m", MODULE,
            "--listen", self.address,
            "--http-port", str(self.http_port),
            "--ws-port", str(self.ws_port),
            # The password goes in a 0600 file: argv is world-readable in /proc and ends up in error messages.
            "--username", self.username,
            "--password-file", str(self.password_file),
            "--control", str(self.control_path),
            "--frame-bytes", str(self.frame_bytes),
            "--fps", str(self.fps),
            "--static-kib", str(self.static_kib),
        ]  # fmt: skip

    def _started(self) -> None:
        stats = self.stats()
        self.http_port, self.ws_port = stats.http_port, stats.ws_port

    # ------------------------------------------------------------ what clients use

    def url(self, path: str = "/", host: str | None = None) -> str:
        """http://host:http_port/path; host defaults to the listen address (127.0.0.1 for 0.0.0.0)."""
        return f"http://{self._host(host)}:{self.http_port}{path}"

    def ws_url(self, path: str = "/websocket/stream?channel=1", host: str | None = None) -> str:
        """ws://host:ws_port/path: the DVR's own plain WebSocket, as the page opens it over http."""
        return f"ws://{self._host(host)}:{self.ws_port}{path}"

    def _host(self, host: str | None) -> str:
        return host or ("127.0.0.1" if self.address in ("0.0.0.0", "") else self.address)

    # ------------------------------------------------------------ control API

    def stats(self) -> DvrStats:
        return DvrStats.from_json(self._call({"cmd": "stats"}))

    def reset(self) -> None:
        """Zero the counts and forget requests and closed WebSockets; open ones stay listed, their frames from 0."""
        self._call({"cmd": "reset"})

    def close_websockets(self) -> int:
        """Close every open video WebSocket (code 1001, each within one frame interval); returns how many."""
        return int(self._call({"cmd": "close_websockets"})["closed"])

    def requests_for(self, path: str) -> tuple[DvrRequest, ...]:
        """The recent requests for `path` (without query string), oldest first."""
        return tuple(record for record in self.stats().recent if record.path == path)


def fake_dvr(
    exec_prefix: Sequence[str],
    address: str,
    http_port: int,
    ws_port: int,
    username: str,
    password: str,
    directory: Path,
    **options: Any,
) -> FakeDvr:
    """A fake DVR for a `with` block: started on the way in, stopped on the way out whatever happened.

    Ports 0 let the OS pick free ones (then read `dvr.http_port`, `dvr.ws_port`);
    `options` are FakeDvr's frame_bytes (4096), fps (25) and static_kib (1024).
    """
    return FakeDvr(exec_prefix, address, http_port, ws_port, username, password, directory, **options)
