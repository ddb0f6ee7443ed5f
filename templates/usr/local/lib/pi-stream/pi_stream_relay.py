#!/usr/bin/python3
"""pi-stream's relay agent, on a Pi of a site with `topology: relay`. Installed by pi-stream; do not edit here.

The Pi has a WireGuard peer per relay (wg-quick@pistream) and pushes every camera
once to the tunnel's service address (nginx-rtmp `push`). This agent decides which
relay that address leads to: every relay in the site's order of preference that
answered its last probes is up; the agent uses the first one up, stays on it while
it answers, and returns to an earlier relay once that one has answered for
`failback_seconds` (no flapping on a relay that comes and goes).

A probe is a TCP connection to the relay's RTMP port at its own tunnel address:
it passes only when the tunnel carries traffic both ways and nginx runs there.
A switch is two steps: WireGuard's allowed IPs give the service address to the
new relay (a peer's allowed IPs are unique, so it leaves the old one), then the
push connections still open to it are closed (`ss -K`): nginx-rtmp reconnects
within its push_reconnect, and that connection goes to the new relay.

The state (which relay, since when, each relay's probes) is written to
`state_file` for `pi-stream status` and verify. Runs on Debian's python3; nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_TIMEOUT_SECONDS = 10


@dataclass
class RelayHealth:
    name: str
    failures: int = 0
    up_since: float | None = None  # when it started answering; None while it is down or not yet probed

    def observe(self, ok: bool, now: float, failures_for_down: int) -> None:
        if ok:
            self.failures = 0
            if self.up_since is None:
                self.up_since = now
        else:
            self.failures += 1
            if self.failures >= failures_for_down:
                self.up_since = None

    @property
    def up(self) -> bool:
        return self.up_since is not None


@dataclass
class Selector:
    """Which relay to use, from the probes: pure, so the policy is tested without a tunnel."""

    names: list[str]
    failures_for_down: int
    failback_seconds: float
    health: dict[str, RelayHealth] = field(default_factory=dict)
    active: str | None = None

    def __post_init__(self) -> None:
        self.health = {name: RelayHealth(name) for name in self.names}

    def observe(self, name: str, ok: bool, now: float) -> None:
        self.health[name].observe(ok, now, self.failures_for_down)

    def choose(self, now: float) -> str | None:
        up = [name for name in self.names if self.health[name].up]
        if self.active is None or self.active not in up:
            # None in use, or it is gone: the first that answers, at once.
            return up[0] if up else self.active
        rank = self.names.index(self.active)
        for name in up:
            if self.names.index(name) >= rank:
                break
            if now - (self.health[name].up_since or now) >= self.failback_seconds:
                return name
        return self.active


def probe(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL)


def route_service_address(config: dict, relay_name: str) -> bool:
    """Give the service address to `relay_name`'s peer, then close the pushes still open to it."""
    service = config["service_address"]
    interface = config["interface"]
    ordered = sorted(config["relays"], key=lambda r: r["name"] != relay_name)  # the new one first: it takes the address over
    for relay in ordered:
        allowed = [f"{relay['tunnel_address']}/32"] + ([f"{service}/32"] if relay["name"] == relay_name else [])
        result = run(["wg", "set", interface, "peer", relay["public_key"], "allowed-ips", ",".join(allowed)])
        if result.returncode != 0:
            print(f"could not route the service address to {relay_name}: wg set: {result.stderr.strip()}", flush=True)
            return False
    # Connections to the old relay would otherwise wait out TCP's retransmissions.
    run(["ss", "-K", "dst", service])
    return True


def write_state(path: Path, selector: Selector, since: float | None, switches: int) -> None:
    state = {
        "active": selector.active,
        "since": since,
        "switches": switches,
        "updated": time.time(),
        "relays": {name: {"up": h.up, "failures": h.failures} for name, h in selector.health.items()},
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def serve(config: dict, rounds: int | None = None) -> None:
    names = [r["name"] for r in config["relays"]]
    addresses = {r["name"]: r["tunnel_address"] for r in config["relays"]}
    interval = float(config["probe_interval_seconds"])
    selector = Selector(names, int(config["probe_failures"]), float(config["failback_seconds"]))
    state_file = Path(config["state_file"])
    since: float | None = None
    switches = 0
    done = 0
    lost: set[str] = set()  # relays that went down while in use
    while rounds is None or done < rounds:
        started = time.monotonic()
        now = time.time()
        for name in names:
            selector.observe(name, probe(addresses[name], int(config["rtmp_port"]), interval), now)
        if selector.active is not None and not selector.health[selector.active].up:
            lost.add(selector.active)
        choice = selector.choose(now)
        if choice is not None and choice == selector.active and choice in lost:
            # The relay in use answers again after its link was down (this Pi's network, or the relay's, went away):
            # the pushes still open were cut meanwhile, and TCP's backoff could take a minute to notice.
            lost.discard(choice)
            if route_service_address(config, choice):
                print(f"relay {choice} answers again: pushing to it anew", flush=True)
        elif choice is not None and choice != selector.active:
            before = selector.active
            if route_service_address(config, choice):
                selector.active = choice
                since = now
                switches += 1
                lost.discard(choice)
                why = "start" if before is None else f"{before} is gone" if not selector.health[before].up else f"{choice} is back"
                print(f"pushing to relay {choice} ({why})", flush=True)
        try:
            write_state(state_file, selector, since, switches)
        except OSError as exc:
            print(f"could not write {state_file}: {exc}", flush=True)
        done += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/pi-stream/relay.json"))
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text(encoding="utf-8"))
    if not config.get("relays"):
        print(f"{args.config}: no relays", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
