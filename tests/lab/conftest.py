"""What every lab module uses: a lab of its own (booted_lab) and ssh into its hosts.

Set PI_STREAM_KEEP_LAB=1 to leave a lab up for debugging (`pi-stream lab ssh --name NAME`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@contextlib.contextmanager
def booted_lab(name: str, hosts: int, suite: str = "bookworm"):
    """A lab of its own for a test module; down afterwards unless PI_STREAM_KEEP_LAB=1."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, systemd-nspawn); deselect them with -m 'not lab'")
    from pi_stream import lab

    state = lab.up(name, hosts=hosts, suite=suite, progress=print)
    try:
        yield state
    finally:
        if os.environ.get("PI_STREAM_KEEP_LAB") != "1":
            lab.down(name)


@contextlib.contextmanager
def controller_cache(directory: Path):
    """PI_STREAM_CACHE set to `directory` for the block: a module whose first deploy must really download and build."""
    saved = os.environ.get("PI_STREAM_CACHE")
    os.environ["PI_STREAM_CACHE"] = str(directory)
    try:
        yield directory
    finally:
        if saved is None:
            os.environ.pop("PI_STREAM_CACHE", None)
        else:
            os.environ["PI_STREAM_CACHE"] = saved


@contextlib.contextmanager
def nvr_beside(lab_state, directory: Path, channels: int, max_sessions: int, username: str, password: str, **options):
    """The fake NVR in a namespace of its own on the lab bridge (its address as `.address`), stopped afterwards."""
    from pi_stream import lab
    from pi_stream.lab.nvr import fake_nvr

    with lab.client_namespace(lab_state, "nvr") as host, fake_nvr(
        host.exec_prefix, host.address, 554, channels, max_sessions, username, password, [], directory, **options
    ) as server:
        server.address = host.address
        yield server


def ssh(lab_state, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from pi_stream import lab

    return subprocess.run(
        lab.ssh_argv(lab_state, host, *command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False
    )


REPO = Path(__file__).resolve().parents[2]


def run_in(client, *argv: str, input: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    """argv run inside a client namespace of a lab (a viewer's), from the repository; a non-zero exit raises.
    The child gets a stdin of its own, an empty pipe at least (pi_stream/proc.py says why)."""
    return subprocess.run([*client.exec_prefix, *argv], input=input, capture_output=True, text=True, timeout=timeout, check=True,
                          cwd=REPO)


@dataclass
class Viewer:
    """tests/lab/remote_viewer.py (Chromium on the player page) running in its namespace, and what the tests ask of it."""

    process: subprocess.Popen
    address: str
    in_namespace: Callable[..., subprocess.CompletedProcess]
    stderr: Path  # the viewer's own errors (Python's, chromedriver's): quoted when it stops answering

    def line(self, seconds: float, ask: str | None = None) -> dict:
        """The viewer's next JSON line (after sending `ask`), within `seconds`."""
        if ask:
            assert self.process.poll() is None, self.exited()
            self.process.stdin.write(ask + "\n")
            self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        assert ready, f"the viewer said nothing in {seconds} s; its stderr ends: {self.stderr_tail()}"
        line = self.process.stdout.readline()
        assert line, self.exited()
        return json.loads(line)

    def exited(self) -> str:
        return f"the viewer exited ({self.process.poll()}); its stderr ends: {self.stderr_tail()}"

    def stderr_tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:] or "(nothing)"


@contextlib.contextmanager
def remote_browser(client, url: str, user: str, password: str, camera: str, transport: str = "webrtc"):
    """Chromium logged in at `url` inside the client's namespace, watching `camera`; quit (or killed) afterwards."""
    stderr = Path(tempfile.mkstemp(prefix="remote-viewer-", suffix=".log")[1])
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [*client.exec_prefix, sys.executable, "-m", "tests.lab.remote_viewer", url, user, password, camera, transport],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
        )
    try:
        yield Viewer(process, client.address, functools.partial(run_in, client), stderr)
    finally:
        if process.poll() is None:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=10)
        stderr.unlink(missing_ok=True)
