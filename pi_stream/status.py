"""`pi-stream status`: what each Pi's capture supervisor says about its cameras and NVRs.

Read over SSH from the supervisor's status file, the same figures the status
page and /metrics show; nothing is recomputed here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pi_stream.capture import RUNTIME_DIR
from pi_stream.checks.connection import testinfra_host
from pi_stream.console import table
from pi_stream.deploy import ssh_failure
from pi_stream.site import Site
from pi_stream.tunnel import AGENT_STATE
from pi_stream.updates import UpdatesVerdict, judge, read_report

STATUS_FILE = f"{RUNTIME_DIR}/status.json"
STALE_SECONDS = 15.0  # the supervisor writes every 2 s
# States that need the user: a source failing, or given up on until its re-probe.
TROUBLE_STATES = ("backing_off", "disabled")


@dataclass
class HostStatus:
    host: str
    document: dict = field(default_factory=dict)
    error: str = ""
    updates: UpdatesVerdict | None = None  # None when the update report could not be read (said in updates_error)
    updates_error: str = ""
    # OME's answer for a host with WebRTC cameras ({"streams": {camera: sessions}} or {"error": ...}), and which it should have.
    webrtc: dict | None = None
    webrtc_cameras: tuple[str, ...] = ()
    # A Pi of a relay site: its relay agent's state file ({"active": relay, "relays": {...}}), or {"error": ...}.
    relay: dict | None = None

    @property
    def troubled(self) -> list[dict]:
        return [c for c in self.document.get("cameras", []) if c["state"] in TROUBLE_STATES]


def read_host_status(site: Site, host_name: str, now: float | None = None) -> HostStatus:
    """What the host's files say. SSH failing to reach the host (ssh's exit 255) is raised, for the
    caller to say in deploy's words (workflows.run_status); the host's own problems are in the status."""
    host = site.host(host_name)
    remote = testinfra_host(site, host)
    try:
        result = remote.run("cat %s", STATUS_FILE)
    except RuntimeError as exc:  # testinfra's Ansible backend could not say (no inventory, no ansible-inventory)
        if ssh_failure(exc):
            raise
        return HostStatus(host_name, error=f"cannot read {STATUS_FILE} on {host.address}: {str(exc).strip()[-200:]}")
    status = capture_status(host_name, result, now)
    try:
        status.updates = judge(read_report(remote), site.updates, now)
    except RuntimeError as exc:
        if ssh_failure(exc):
            raise
        status.updates_error = str(exc)
    status.webrtc_cameras = tuple(c.name for c in site.webrtc_cameras_on(host_name))
    if status.webrtc_cameras:
        from pi_stream.webrtc_checks import ome_streams

        status.webrtc = ome_streams(remote)
    if site.relays:
        status.relay = relay_agent_state(remote.run("cat %s", AGENT_STATE), now)
    return status


def relay_agent_state(result, now: float | None) -> dict:
    """The relay agent's state file, read with `cat`, or {"error": what is wrong and where to look}."""
    if result.rc != 0:
        return {"error": f"no {AGENT_STATE}: is pi-stream-relay running? (systemctl status pi-stream-relay)"}
    try:
        state = json.loads(result.stdout)
    except ValueError:
        return {"error": f"{AGENT_STATE} is not JSON: is pi-stream-relay the version pi-stream deployed?"}
    age = (now or time.time()) - state.get("updated", 0)
    if age > STALE_SECONDS:  # the agent writes it every second
        return {"error": f"its state is {age:.0f} s old: pi-stream-relay is not running (journalctl -u pi-stream-relay)"}
    return state


def capture_status(host_name: str, result, now: float | None) -> HostStatus:
    """The capture supervisor's status file, read with `cat`, as a HostStatus (its error says what is wrong)."""
    if result.rc != 0:
        return HostStatus(host_name, error=f"no {STATUS_FILE}: is pi-stream-capture running? (systemctl status pi-stream-capture)")
    try:
        document = json.loads(result.stdout)
    except ValueError:
        return HostStatus(host_name, error=f"{STATUS_FILE} is not JSON: is pi-stream-capture the version pi-stream deployed?")
    age = (now or time.time()) - document.get("updated", 0)
    if age > STALE_SECONDS:
        stale = f"the status is {age:.0f} s old: pi-stream-capture is not running (journalctl -u pi-stream-capture)"
        return HostStatus(host_name, document, stale)
    return HostStatus(host_name, document)


def format_host(status: HostStatus, now: float | None = None) -> str:
    """Tables for one host: its NVRs' sessions against their budgets, then one row per camera."""
    now = now or time.time()
    lines = [f"{status.host}:"]
    if status.error:
        lines.append(f"  {status.error}")
    nvrs = status.document.get("nvrs", [])
    if nvrs:
        rows = [
            (n["name"], f"{n['sessions_in_use']} of {n['max_sessions']}", ", ".join(n["waiting"]) or "-")
            for n in nvrs
        ]
        lines.append(indent(table(rows, ("nvr", "sessions", "waiting for a session"))))
    cameras = status.document.get("cameras", [])
    if cameras:
        rows = []
        for c in cameras:
            rows.append(
                (
                    c["camera"],
                    c["state"],
                    c.get("codec") or "-",
                    f"{c['fps']:g}" if c.get("fps") is not None else "-",
                    f"{c['bitrate_kbps']:g}" if c.get("bitrate_kbps") is not None else "-",
                    str(c["sessions_opened"]),
                    snapshot_age(c, now),
                    c["detail"] if c["state"] != "live" else (c.get("last_error") and f"last error: {c['last_error']}") or "",
                )
            )
        lines.append(indent(table(rows, ("camera", "state", "codec", "fps", "kbit/s", "sessions", "snapshot", "detail"))))
    disk = status.document.get("disk") or {}
    for kind, entry in sorted(disk.items()):
        note = "" if entry["writing"] else "  PAUSED: below storage.min_free_percent"
        lines.append(f"  {kind}: {entry['path']} {entry['free_percent']:g}% free{note}")
    if status.webrtc is not None:
        lines.append(f"  WebRTC (OvenMediaEngine): {webrtc_summary(status.webrtc, status.webrtc_cameras)}")
    if status.relay is not None:
        lines.append(f"  relay: {relay_summary(status.relay)}")
    if status.updates is not None:
        lines.append(f"  security updates: {status.updates.summary}")
        lines += [f"    {note}" for note in status.updates.notes]
    elif status.updates_error:
        lines.append(f"  security updates: unknown: {status.updates_error}")
    return "\n".join(lines)


def webrtc_summary(answer: dict, cameras: tuple[str, ...]) -> str:
    """Viewers per camera from OME's own counters; a camera OME does not have is named, with where to look."""
    if "error" in answer:
        return f"unknown: {answer['error']} (systemctl status pi-stream-ome)"
    streams = answer.get("streams", {})
    parts = [f"{name} {streams[name]} viewer{'s' if streams[name] != 1 else ''}" for name in cameras if name in streams]
    missing = [name for name in cameras if name not in streams]
    if missing:
        parts.append(f"NOT IN OME: {', '.join(missing)} (journalctl -u nginx -u pi-stream-ome)")
    return ", ".join(parts)


def relay_ok(state: dict) -> bool:
    """The agent runs and some relay answers it: remote viewers can get a picture."""
    return "error" not in state and any(r["up"] for r in state.get("relays", {}).values())


def relay_summary(state: dict) -> str:
    """Which relay the Pi pushes to, and how each relay answers its probes through the tunnel."""
    if "error" in state:
        return f"unknown: {state['error']}"
    relays = state.get("relays", {})
    health = ", ".join(
        f"{name} up" if r["up"] else f"{name} DOWN ({r.get('failures', 0)} probes missed)" for name, r in relays.items()
    )
    active = state.get("active")
    if not relay_ok(state):
        return f"NONE ANSWERS ({health}): remote viewers get no picture; check the relays and this Pi's uplink"
    # The agent counts its first choice as a switch too.
    moves = max(0, state.get("switches", 0) - 1)
    moved = f"; moved {moves} time{'s' if moves != 1 else ''} since it started" if moves else ""
    return f"pushing to {active} ({health}){moved}"


def snapshot_age(camera: dict, now: float) -> str:
    taken = (camera.get("snapshots") or {}).get("latest_at")
    return f"{now - taken:.0f} s ago" if taken else "-"


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
