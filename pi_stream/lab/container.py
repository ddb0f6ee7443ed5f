"""Booting and stopping one lab host: systemd-nspawn with systemd as PID 1 in the host's network namespace.

Checked on this machine (systemd 252, PID 1 not systemd, cgroup v1 hybrid):
- `--register=no` and `--keep-unit` are both required: without either, nspawn
  tries the system bus to register with machined or to create a scope, and
  fails ("Failed to open system bus"). With both it runs in our own cgroup.
- nspawn leaves /run/systemd/nspawn/propagate/<machine> (an empty directory; it
  refuses to remove it because /run is not a tmpfs here: "Attempted to remove
  disk file system") and an image lock file in /run/systemd/nspawn/locks.
  `down` removes both so nothing accumulates.
- With `--boot`, SIGTERM to nspawn makes it ask the container's systemd to
  power off; the container is gone within a few seconds. Under qemu-user
  emulation (arm64 here) that signal arrives as another one: see nspawn_argv().
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pi_stream.errors import LabError
from pi_stream.lab import model, procs
from pi_stream.lab.model import LabHost
from pi_stream.proc import require_tools

NSPAWN = "systemd-nspawn"
NSPAWN_RUN = Path("/run/systemd/nspawn")
STOP_TIMEOUT_SECONDS = 30


def nspawn_argv(host: LabHost, emulated: bool = False) -> list[str]:
    """The nspawn command line; `emulated` for a foreign architecture running under qemu-user."""
    return [
        NSPAWN,
        f"--directory={host.root}",
        f"--machine={host.machine}",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{host.namespace}",
        # nftables (fail2ban's ban action) and ping need these inside; nspawn drops them by default.
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        # WireGuard (topology relay): this machine's kernel has no WireGuard module, so wg-quick
        # falls back to wireguard-go, a userspace tunnel on /dev/net/tun. A Pi's kernel has the module.
        "--bind=/dev/net/tun",
        # The root's own files stay as prepare_root() wrote them, not copies of the host's.
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        # Boot messages go to the log file, so a failed boot can be explained from its tail.
        "--console=read-only",
        # On SIGTERM nspawn sends the container's systemd SIGRTMIN+3 (halt). qemu-user does not pass
        # real-time signals through unchanged: an arm64 systemd received it as "rescue mode" and kept
        # running. SIGINT (ctrl-alt-del) arrives intact, and prepare_root() points ctrl-alt-del.target
        # at poweroff.target in emulated roots.
        *(["--kill-signal=SIGINT"] if emulated else []),
    ]


def boot(host: LabHost, log: Path, emulated: bool = False) -> procs.ProcessRef:
    require_tools(NSPAWN)
    try:
        return procs.spawn(nspawn_argv(host, emulated), log)
    except LabError as exc:
        raise LabError(f"{host.name} ({host.address}): {exc.message}") from exc


def machine_of(argv: list[str]) -> str | None:
    """The --machine of an nspawn command line (either spelling), or None if it is not nspawn."""
    if not argv or Path(argv[0]).name != NSPAWN:
        return None
    for i, part in enumerate(argv):
        if part.startswith("--machine="):
            return part.split("=", 1)[1]
        if part in ("--machine", "-M") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def running_for_lab(name: str) -> list[procs.ProcessRef]:
    """Every nspawn of this lab, found by machine name: also those a crashed `up` never recorded."""
    pattern = model.machine_re(name)
    found = []
    for pid in procs.all_pids():
        machine = machine_of(procs.cmdline(pid))
        if machine and pattern.match(machine):
            ref = procs.ref_of(pid)
            if ref:
                found.append(ref)
    return found


def stop_all(refs: list[procs.ProcessRef]) -> None:
    """Power the containers off together (SIGTERM), SIGKILL what is left after the timeout."""
    procs.stop(refs, NSPAWN, signal.SIGTERM, STOP_TIMEOUT_SECONDS)


def image_lock(root: Path) -> Path | None:
    """nspawn's lock file for an image directory: named after the directory's device and inode."""
    try:
        st = root.stat()
    except OSError:
        return None
    return NSPAWN_RUN / "locks" / f"inode-{st.st_dev}:{st.st_ino}"


def remove_leftovers(machine: str, root: Path) -> None:
    """What nspawn leaves in /run after it exited (see the module docstring); call before deleting `root`."""
    lock = image_lock(root)
    if lock is not None:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    propagate = NSPAWN_RUN / "propagate" / machine
    with contextlib.suppress(FileNotFoundError, OSError):
        for entry in propagate.iterdir():
            if entry.is_file() or entry.is_symlink():
                entry.unlink()
        os.rmdir(propagate)
