"""`pi-stream status` on a Pi of a relay site: what its relay agent's state file says, in words."""

from __future__ import annotations

import json
from types import SimpleNamespace

from pi_stream.status import HostStatus, format_host, relay_agent_state, relay_ok, relay_summary
from pi_stream.workflows import status_document

NOW = 1_800_000_000.0


def cat(state: dict | None, rc: int = 0, stdout: str | None = None) -> SimpleNamespace:
    """What `cat STATE_FILE` returns through testinfra (rc and stdout are all status reads)."""
    return SimpleNamespace(rc=rc, stdout=stdout if stdout is not None else json.dumps(state))


def agent(active: str | None, up: dict[str, bool], switches: int = 1, age: float = 1.0) -> dict:
    """A state file as the agent writes it (templates/usr/local/lib/pi-stream/pi_stream_relay.py write_state)."""
    return {
        "active": active, "since": NOW - 600, "switches": switches, "updated": NOW - age,
        "relays": {name: {"up": ok, "failures": 0 if ok else 4} for name, ok in up.items()},
    }


def test_the_relay_in_use_and_each_relays_probes_are_shown():
    state = relay_agent_state(cat(agent("relay1", {"relay1": True, "relay2": True})), NOW)
    assert relay_ok(state)
    assert relay_summary(state) == "pushing to relay1 (relay1 up, relay2 up)"
    moved = relay_agent_state(cat(agent("relay2", {"relay1": False, "relay2": True}, switches=2)), NOW)
    assert relay_summary(moved) == "pushing to relay2 (relay1 DOWN (4 probes missed), relay2 up); moved 1 time since it started"
    text = format_host(HostStatus("pi1", relay=moved))
    assert "  relay: pushing to relay2 (relay1 DOWN (4 probes missed), relay2 up); moved 1 time since it started" in text.splitlines()
    assert status_document(HostStatus("pi1", relay=moved))["relay"]["active"] == "relay2"


def test_no_relay_answering_needs_attention():
    state = relay_agent_state(cat(agent("relay1", {"relay1": False, "relay2": False})), NOW)
    assert not relay_ok(state)
    assert relay_summary(state).startswith("NONE ANSWERS (relay1 DOWN (4 probes missed), relay2 DOWN (4 probes missed))")


def test_an_agent_that_is_not_running_is_named_with_where_to_look():
    missing = relay_agent_state(cat(None, rc=1, stdout=""), NOW)
    assert not relay_ok(missing) and "systemctl status pi-stream-relay" in relay_summary(missing)
    stale = relay_agent_state(cat(agent("relay1", {"relay1": True}, age=120)), NOW)
    assert not relay_ok(stale) and relay_summary(stale) == (
        "unknown: its state is 120 s old: pi-stream-relay is not running (journalctl -u pi-stream-relay)"
    )
    garbled = relay_agent_state(cat(None, stdout="{not json"), NOW)
    assert not relay_ok(garbled) and "is not JSON" in relay_summary(garbled)


def test_a_site_without_relays_shows_no_relay_line():
    assert "relay" not in format_host(HostStatus("pi1"))
    assert "relay" not in status_document(HostStatus("pi1", document={"cameras": []}))


def test_status_exits_5_naming_the_pi_whose_relays_are_all_gone(make_site, monkeypatch):
    import io

    from pi_stream import status
    from pi_stream.console import Console
    from pi_stream.errors import ExitStatus
    from pi_stream.site import load_site
    from pi_stream.workflows import run_status

    site = load_site(make_site("relay"))
    states = {"up": agent("relay1", {"relay1": True, "relay2": False}), "gone": agent("relay1", {"relay1": False, "relay2": False})}
    for name, expected in (("up", ExitStatus.OK), ("gone", ExitStatus.VERIFY_FAILED)):
        monkeypatch.setattr(status, "read_host_status", lambda site, host, state=states[name]: HostStatus(
            host, document={"cameras": []}, relay=relay_agent_state(cat(state), NOW)))
        out, err = io.StringIO(), io.StringIO()
        assert run_status(site, Console(out, err, show_progress=False)) == expected, name
        assert ("pi1: relays" in err.getvalue()) == (name == "gone")
        assert "  relay: " in out.getvalue()
