"""The lab itself: idempotent up/down that leaves nothing behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pi_stream import lab

NAME = "labtest"


def leftovers() -> list[str]:
    bridge, veth = lab.interface_names(NAME)
    digest = lab.short_hash(NAME)
    found = []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if bridge in line or veth in line]
    found += [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
              .stdout.split() if digest in ns]
    found += [line for line in Path("/proc/mounts").read_text().splitlines() if f"/labs/{NAME}/" in line]
    found += [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _is_our_nspawn(p)]
    if (lab.LABS_DIR / NAME).exists():
        found.append(str(lab.LABS_DIR / NAME))
    return found


def _is_our_nspawn(proc: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return b"systemd-nspawn" in cmdline and f"ps-{NAME}-".encode() in cmdline


def test_up_is_idempotent_and_down_leaves_nothing():
    lab.down(NAME)
    try:
        first = lab.up(NAME, hosts=1, progress=lambda _: None)
        started = time.monotonic()
        again = lab.up(NAME, hosts=1, progress=lambda _: None)
        assert again.hosts == first.hosts and time.monotonic() - started < 10, "a running lab is returned as is"
        host = first.hosts[0]
        result = subprocess.run(lab.ssh_argv(first, "pi1", "hostname"), capture_output=True, text=True, timeout=30)
        assert result.stdout.strip() == "pi1"
        with lab.client_namespace(first, "probe") as client:
            ping = subprocess.run([*client.exec_prefix, "ping", "-c", "1", "-W", "2", host.address],
                                  capture_output=True, timeout=30)
            assert ping.returncode == 0, "a client namespace on the bridge reaches the host"
        assert lab.status(NAME) is not None
    finally:
        lab.down(NAME)
    assert leftovers() == []
    lab.down(NAME)  # idempotent
    assert lab.status(NAME) is None
