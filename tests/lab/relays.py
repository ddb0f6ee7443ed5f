"""What the relay lab test and bench/relay read off a lab of a Pi and two relays: the agent's state, bytes sent, pushes."""

from __future__ import annotations

import json
import subprocess
import time

from tests.lab.conftest import ssh

PI = "pi1"
SERVICE_ADDRESS = "10.77.0.254"  # the tunnel's default service address (pi_stream/site/remote.py)


def on(lab_state, host: str, command: str, timeout: float = 60) -> str:
    result = ssh(lab_state, host, command, timeout=timeout)
    assert result.returncode == 0, (host, command, result.stderr)
    return result.stdout.strip()


def url_of(lab_state, host: str) -> str:
    return f"https://{lab_state.host(host).address}"


def agent_state(lab_state) -> dict:
    return json.loads(on(lab_state, PI, "cat /run/pi-stream/relay-state.json"))


def tx_bytes(lab_state, host: str) -> int:
    """Bytes sent on the host's own interface, read from its namespace (this machine's view, not the host's tools)."""
    namespace = lab_state.host(host).namespace
    out = subprocess.run(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/eth0/statistics/tx_bytes"],
                         capture_output=True, text=True, timeout=30, check=True, stdin=subprocess.DEVNULL)
    return int(out.stdout)


def pushes(lab_state) -> int:
    """The Pi's RTMP connections to the tunnel's service address: one per relayed camera."""
    out = on(lab_state, PI, f"ss -Htn state established '( dport = :1935 )' dst {SERVICE_ADDRESS}")
    return len(out.splitlines())


def playing_through(browser, url: str, seconds: float) -> float:
    """Seconds until the viewer's tile plays (its video time moving) through the relay at `url`."""
    started = time.monotonic()
    last = {}
    while time.monotonic() - started < seconds:
        last = browser.line(30, "report")
        if last.get("relay") == url and last.get("advanced", 0) > 0.5:
            return time.monotonic() - started
    raise AssertionError(f"not playing through {url} after {seconds} s: {last}")


