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
    from pi_stream import workflows
    from pi_stream.workflows import run_status

    site = load_site(make_site("relay"))
    monkeypatch.setattr(workflows, "check_logins", lambda *args: None)  # the documentation addresses reach no Pi
    states = {"up": agent("relay1", {"relay1": True, "relay2": False}), "gone": agent("relay1", {"relay1": False, "relay2": False})}
    for name, expected in (("up", ExitStatus.OK), ("gone", ExitStatus.VERIFY_FAILED)):
        monkeypatch.setattr(status, "read_host_status", lambda site, host, state=states[name]: HostStatus(
            host, document={"cameras": []}, relay=relay_agent_state(cat(state), NOW)))
        out, err = io.StringIO(), io.StringIO()
        assert run_status(site, Console(out, err, show_progress=False)) == expected, name
        assert ("pi1: relays" in err.getvalue()) == (name == "gone")
        assert "  relay: " in out.getvalue()


# --- a host that goes away while status or verify talks to it: deploy's one-line error, exit 6 ---


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_banner_server():
    """A loopback port that answers as an SSH server's first line does: enough for the probe deploy makes."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return server


def loopback_site(tmp_path, port: int):
    from pi_stream.site import load_site
    from tests.conftest import write_site

    hosts = {"pi1": {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "pi"}}
    return load_site(write_site(tmp_path / "s", {"name": "s", "cameras": [{"name": "cam", "source": {"type": "testsrc"}}]}, hosts))


SSH_GONE = RuntimeError(SimpleNamespace(rc=255, stderr="ssh: connect to host 127.0.0.1 port 22: Connection refused\r\n"))


def test_a_host_that_ssh_no_longer_reaches_is_raised_not_shown_as_a_missing_status_file(tmp_path, monkeypatch):
    import pytest

    from pi_stream import status

    class Remote:
        def __init__(self, error):
            self.error = error

        def run(self, *args):
            raise self.error

    site = loopback_site(tmp_path, closed_port())
    monkeypatch.setattr(status, "testinfra_host", lambda site, host: Remote(SSH_GONE))
    with pytest.raises(RuntimeError) as raised:
        status.read_host_status(site, "pi1")
    assert raised.value is SSH_GONE
    monkeypatch.setattr(status, "testinfra_host", lambda site, host: Remote(RuntimeError("No inventory was parsed")))
    assert "No inventory was parsed" in status.read_host_status(site, "pi1").error


def answered_at_first(monkeypatch) -> None:
    """The hosts answered the probe before the start, and are what they are for every probe after it."""
    from pi_stream import workflows

    real, calls = workflows.check_logins, []

    def check_logins(*args) -> None:
        calls.append(args)
        if len(calls) > 1:
            real(*args)

    monkeypatch.setattr(workflows, "check_logins", check_logins)


def test_status_and_verify_losing_a_host_midway_say_it_as_deploy_does(tmp_path, monkeypatch):
    import pytest
    import requests

    from pi_stream import status, workflows
    from pi_stream.console import Console
    from pi_stream.errors import ExitStatus, UnreachableError

    site = loopback_site(tmp_path, closed_port())
    answered_at_first(monkeypatch)  # it answered then, and was gone the moment after

    def gone(*args, **kwargs):
        raise SSH_GONE

    monkeypatch.setattr(status, "read_host_status", gone)
    with pytest.raises(UnreachableError) as raised:
        workflows.run_status(site, Console(show_progress=False))
    assert raised.value.status == ExitStatus.UNREACHABLE
    assert raised.value.message.splitlines()[0].startswith("pi1 (127.0.0.1:") and "status could not finish" in raised.value.message

    answered_at_first(monkeypatch)
    monkeypatch.setattr(workflows, "verify_site", lambda *args, **kwargs: (_ for _ in ()).throw(requests.ConnectionError("refused")))
    with pytest.raises(UnreachableError, match="verify could not finish"):
        workflows.run_verify(site, "alice", "x", Console(show_progress=False))

    from pi_stream.verify import Check, VerifyResult

    answered_at_first(monkeypatch)
    failed = VerifyResult([Check("pi1", "service nginx active", False, "RuntimeError: CommandResult(...)")])
    monkeypatch.setattr(workflows, "verify_site", lambda *args, **kwargs: failed)
    with pytest.raises(UnreachableError, match="1 of 1 checks failed, while a host went away"):
        workflows.run_verify(site, "alice", "x", Console(show_progress=False))


class LoggedIn:
    """testinfra's host, logged in: `true` succeeds (remote commands that exit 255 themselves are not ssh failing)."""

    def run(self, *args):
        return SimpleNamespace(rc=0, stdout="", stderr="")


def test_a_host_that_still_answers_leaves_the_failure_as_it_was(tmp_path, monkeypatch):
    import io

    import pytest
    import requests

    from pi_stream import deploy, status, workflows
    from pi_stream.console import Console
    from pi_stream.verify import Check, VerifyResult

    server = ssh_banner_server()
    try:
        site = loopback_site(tmp_path, server.getsockname()[1])
        monkeypatch.setattr(deploy, "testinfra_host", lambda site, host: LoggedIn())
        refused = requests.ConnectionError("port 443 refused: nginx is down, the Pi is not")
        monkeypatch.setattr(workflows, "verify_site", lambda *args, **kwargs: (_ for _ in ()).throw(refused))
        with pytest.raises(requests.ConnectionError) as raised:
            workflows.run_verify(site, "alice", "x", Console(show_progress=False))
        assert raised.value is refused
        own_255 = RuntimeError(SimpleNamespace(rc=255, stderr="ERROR   Permission denied to socket (you must be root)\n"))
        monkeypatch.setattr(status, "read_host_status", lambda *args: (_ for _ in ()).throw(own_255))
        with pytest.raises(RuntimeError) as raised:
            workflows.run_status(site, Console(show_progress=False))
        assert raised.value is own_255, "a command's own exit 255 (fail2ban-client's) is not the host gone"
        failed = VerifyResult([Check("pi1", "service nginx active", False, "inactive")])
        monkeypatch.setattr(workflows, "verify_site", lambda *args, **kwargs: failed)
        err = io.StringIO()
        assert workflows.run_verify(site, "alice", "x", Console(io.StringIO(), err, show_progress=False)) is failed
        assert "1 of 1 checks failed" in err.getvalue()
    finally:
        server.close()


def test_verify_and_status_log_in_before_anything_and_a_refused_key_is_exit_6(tmp_path, monkeypatch):
    """A new site's most common mistake (no ssh-copy-id): one line naming the fix, not a testinfra repr per check."""
    import pytest

    from pi_stream import deploy, workflows
    from pi_stream.errors import UnreachableError

    server = ssh_banner_server()
    try:
        site = loopback_site(tmp_path, server.getsockname()[1])
        denied = RuntimeError(SimpleNamespace(rc=255, stderr="pi@127.0.0.1: Permission denied (publickey).\r\n"))

        class Remote:
            def run(self, *args):
                raise denied

        monkeypatch.setattr(deploy, "testinfra_host", lambda site, host: Remote())
        with pytest.raises(UnreachableError) as raised:
            workflows.check_logins(site, site.hosts, "nothing was verified")
        first, second = raised.value.message.splitlines()
        assert first == f"pi1 (127.0.0.1:{server.getsockname()[1]}): SSH failed: pi@127.0.0.1: Permission denied (publickey)."
        assert second.startswith("nothing was verified;") and "ssh-copy-id" in second
    finally:
        server.close()
