"""Long-running processes the lab starts and stops itself (systemd-nspawn, the proxy's nginx).

PID 1 on the machines this runs on is not systemd (containers, CI runners), so
there is no systemd-run or scope to hand them to. Each one is started in its
own session (a Ctrl-C in the terminal does not reach it; a later `down` from
another process can still kill its whole process group), with output to a log
file, and is recorded as (pid, start time): a PID alone could be reused by an
unrelated process between `up` and `down`.

`proc.run` stays the helper for commands that finish; this is the only place
that leaves a process running.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pi_stream.errors import LabError

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_time: int  # field 22 of /proc/PID/stat (clock ticks since boot); 0 = unknown (older state files)


def start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process, None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(ref: ProcessRef | None, program: str) -> bool:
    """Still running, and still the process we started (same start time, or same program for old records)."""
    if ref is None or ref.pid <= 0:
        return False
    started = start_time(ref.pid)
    if started is None:
        return False
    if ref.start_time:
        return started == ref.start_time
    argv = cmdline(ref.pid)
    return bool(argv) and Path(argv[0]).name == program


def spawn(argv: Sequence[str], log: Path) -> ProcessRef:
    """Start a long-running program in its own session with stdout and stderr appended to `log`.

    Popen returns only after the child has exec'd (or raises if it could not), so
    the start time read here is the program's own.
    """
    argv = [str(part) for part in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, start_new_session=True, close_fds=True
            )
        except OSError as exc:
            raise LabError(f"could not start {argv[0]}: {exc}") from exc
    started = start_time(process.pid)
    if started is None:
        process.wait(timeout=5)
        raise LabError(f"{argv[0]} exited at once (status {process.returncode}); its output:\n{log_tail(log)}")
    return ProcessRef(pid=process.pid, start_time=started)


def reap(pid: int) -> None:
    """Collect an exited child of ours, so it does not linger as a zombie in a long-lived caller (pytest)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(refs: Iterable[ProcessRef], program: str, timeout: float) -> list[ProcessRef]:
    """Wait until all have exited; returns the ones still running at the deadline."""
    pending = list(refs)
    deadline = time.monotonic() + timeout
    while True:
        for ref in pending:
            reap(ref.pid)
        pending = [ref for ref in pending if alive(ref, program)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.2)


def signal_ref(ref: ProcessRef, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(ref.pid, sig)  # spawn() made it a session (and group) leader
        else:
            os.kill(ref.pid, sig)


def stop(refs: Sequence[ProcessRef], program: str, sig: int, timeout: float) -> None:
    """Ask politely with `sig`, wait up to `timeout`, then SIGKILL their process groups."""
    running = [ref for ref in refs if alive(ref, program)]
    for ref in running:
        signal_ref(ref, sig)
    left = wait_gone(running, program, timeout)
    for ref in left:
        signal_ref(ref, signal.SIGKILL, group=True)
    left = wait_gone(left, program, 10)
    if left:
        raise LabError(f"{program} (pid {', '.join(str(r.pid) for r in left)}) did not exit even after SIGKILL")


def all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def ref_of(pid: int) -> ProcessRef | None:
    started = start_time(pid)
    return ProcessRef(pid, started) if started is not None else None


def netns_inode(path: Path) -> int | None:
    """The inode that identifies a network namespace (of a /run/netns entry or /proc/PID/ns/net)."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Processes living in one of these network namespaces.

    A container's processes are found this way even after their nspawn died:
    /proc/PID/root does not help (it reads "/" across mount namespaces), but
    every process of a lab host sits in that host's network namespace.
    """
    found = []
    for pid in all_pids():
        if pid != os.getpid() and netns_inode(Path(f"/proc/{pid}/ns/net")) in inodes:
            found.append(pid)
    return found


def kill_in_netns(inodes: set[int]) -> None:
    if not inodes:
        return
    for _ in range(10):
        pids = pids_in_netns(inodes)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            reap(pid)
        time.sleep(0.3)
    left = pids_in_netns(inodes)
    if left:
        raise LabError(f"processes {left} in the lab's network namespaces survived SIGKILL")


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    # The container console writes carriage returns and colour codes; keep the tail readable.
    cleaned = [line.rstrip("\r") for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return "\n".join(cleaned[-lines:]) or "(log is empty)"
