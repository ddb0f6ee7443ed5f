"""SSH into lab hosts with the lab's own key and exact known_hosts (StrictHostKeyChecking=yes, never "accept new")."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pi_stream.errors import CommandError, LabError
from pi_stream.lab import procs
from pi_stream.lab.model import Lab, LabHost
from pi_stream.proc import run


def ensure_key(key: Path, comment: str) -> str:
    """The lab's ed25519 client key pair (created once, 0600); returns the public key line."""
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], timeout=30)
    os.chmod(key, 0o600)
    return key.with_name(key.name + ".pub").read_text(encoding="utf-8")


def ssh_argv(lab: Lab, host_name: str, *command: str, batch: bool = True) -> list[str]:
    """An ssh command line into a lab host; `command` runs there (none: an interactive shell).

    As with ssh itself, the command words are joined with spaces and run by the
    remote shell: pass `shlex.join(argv)` when an argument has spaces or quotes.

    `-F none`: the user's ~/.ssh/config (ControlMaster, other keys, a jump host)
    must not change what the lab tests. BatchMode: fail rather than prompt.
    """
    host = lab.host(host_name)
    return [
        "ssh",
        "-F", "none",
        "-i", str(lab.key_path),
        "-o", f"UserKnownHostsFile={lab.known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
        *(["-o", "BatchMode=yes"] if batch else []),
        "-p", str(host.ssh_port),
        f"{host.ssh_user}@{host.address}",
        *command,
    ]


def wait_for_ssh(lab: Lab, host: LabHost, container: procs.ProcessRef, log: Path, deadline: float) -> None:
    """Poll `ssh host true` until it works, the container exits or the deadline (monotonic) passes."""
    last = ""
    while True:
        if not procs.alive(container, "systemd-nspawn"):
            procs.reap(container.pid)
            raise LabError(
                f"{host.name} ({host.address}): the container exited while booting; last lines of its console:\n{procs.log_tail(log)}"
            )
        try:
            run(ssh_argv(lab, host.name, "true"), timeout=15)
            return
        except CommandError as exc:
            last = exc.message.splitlines()[-1] if exc.message else ""
        if time.monotonic() >= deadline:
            raise LabError(
                f"{host.name} ({host.address}) did not answer on SSH in time (last: {last}); last lines of its console:\n{procs.log_tail(log)}"
            )
        time.sleep(0.5)
