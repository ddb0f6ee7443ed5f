"""What every lab module uses: a lab of its own (booted_lab) and ssh into its hosts.

Set PI_STREAM_KEEP_LAB=1 to leave a lab up for debugging (`pi-stream lab ssh --name NAME`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess

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


def ssh(lab_state, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from pi_stream import lab

    return subprocess.run(
        lab.ssh_argv(lab_state, host, *command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False
    )
