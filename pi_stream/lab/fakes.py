"""The life cycle shared by the lab's fake devices (fake_nvr.py, fake_dvr.py): start, wait for "ready", steer, stop.

A fake is a long-running server started as a lab process (own session, output
appended to a log file, see procs.py), possibly in another network namespace
through `exec_prefix` (e.g. `["ip", "netns", "exec", NS]`). It prints "ready" on
a line of its own once it serves, takes its password from a 0600 file (argv is
world-readable in /proc), and answers newline JSON on a unix control socket: a
file, so it works across namespaces. A subclass says how to run it (argv) and
what its commands mean; this class does the rest, the same way for every fake.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pi_stream.credentials import write_private_file
from pi_stream.errors import LabError
from pi_stream.lab import procs

READY_TIMEOUT_SECONDS = 30  # ~0.3 s on an idle machine; slack for a busy 2-core CI runner
STOP_TIMEOUT_SECONDS = 10
CONTROL_TIMEOUT_SECONDS = 15
UNIX_PATH_MAX = 100  # sun_path holds 108 bytes; pytest's tmp_path can be longer than that


class ControlledFake:
    """One fake device process; use it as a context manager (or call stop()) so it never outlives the test."""

    label: ClassVar[str]  # "fake NVR": how error messages name it
    stem: ClassVar[str]  # "fake_nvr": names its log, control socket and password file in `directory`
    program: ClassVar[str]  # the name procs.stop reports if it will not die

    def __init__(self, exec_prefix: Sequence[str], directory: Path, password: str | None) -> None:
        self.exec_prefix = list(exec_prefix)
        self.directory = directory
        self.password = password
        self.log = directory / f"{self.stem}.log"
        self.control_path = directory / f"{self.stem}.sock"
        self._short_dir: Path | None = None
        self.ref: procs.ProcessRef | None = None

    @property
    def password_file(self) -> Path:
        return self.directory / f"{self.stem}.password"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def _started(self) -> None:
        """Runs once the fake is ready, before start() returns: e.g. read the ports the OS picked."""

    # ------------------------------------------------------------ life cycle

    def start(self) -> Self:
        """Launch it and return once it serves ("ready" in its log); LabError with the log tail if it dies or hangs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if len(str(self.control_path)) > UNIX_PATH_MAX:
            self._short_dir = Path(tempfile.mkdtemp(prefix=f"pi-stream-{self.stem.removeprefix('fake_')}-"))
            self.control_path = self._short_dir / "control.sock"
        if self.password is not None:
            write_private_file(self.password_file, self.password + "\n")
        offset = self.log.stat().st_size if self.log.exists() else 0
        try:
            self.ref = procs.spawn(self.argv(), self.log)
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while not self._ready(offset):
                if not procs.alive(self.ref, self.program):
                    procs.reap(self.ref.pid)
                    self.ref = None
                    raise LabError(f"the {self.label} exited at start; its log {self.log}:\n{procs.log_tail(self.log)}")
                if time.monotonic() > deadline:
                    raise LabError(
                        f"the {self.label} did not print 'ready' within {READY_TIMEOUT_SECONDS} s; its log:\n{procs.log_tail(self.log)}"
                    )
                time.sleep(0.05)
            # It has read the password by now: the file need not stay on disk while the fake runs.
            self._remove_password_file()
            self._started()
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, offset: int) -> bool:
        try:
            with open(self.log, "rb") as handle:
                handle.seek(offset)
                return b"ready" in handle.read().splitlines()
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL of its process group; safe to call twice."""
        try:
            if self.ref is not None:
                procs.stop([self.ref], self.program, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
                procs.reap(self.ref.pid)
                self.ref = None
        finally:
            self._remove_password_file()
            if self._short_dir is not None:
                shutil.rmtree(self._short_dir, ignore_errors=True)
                self._short_dir = None

    def _remove_password_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.password_file.unlink()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ control socket

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request line, one reply line; LabError if it cannot be asked or says "ok": false."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(CONTROL_TIMEOUT_SECONDS)
                sock.connect(str(self.control_path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                with sock.makefile("rb") as stream:
                    line = stream.readline()
        except OSError as exc:
            raise LabError(f"{self.label} control socket {self.control_path}: {exc}; its log:\n{procs.log_tail(self.log)}") from exc
        if not line:
            raise LabError(f"{self.label} closed the control connection without answering {request['cmd']}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LabError(f"{self.label} refused {request}: {reply.get('error')}")
        return reply
