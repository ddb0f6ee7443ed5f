"""deploy: argv lists, stats from structured events, failures kept per host."""

from __future__ import annotations

import json

from pi_stream.deploy import DeployResult, absorb, parse_event, playbook_argv
from pi_stream.errors import ExitStatus
from pi_stream.site import load_site


def test_playbook_argv_is_a_list_with_site_and_bundle(make_site):
    site = load_site(make_site())
    argv = playbook_argv(site, check=True)
    assert argv[0].endswith("ansible-playbook") and argv[-1] == "--check"
    assert f"pi_stream_site={site.directory.resolve()}" in argv
    assert any(a.startswith("pi_stream_bundle=") and a.endswith(".pi-stream/bundle") for a in argv)


def test_stats_and_failures_come_from_events():
    result = DeployResult(status=ExitStatus.OK, rc=0)
    lines = [
        json.dumps({"event": "task_start", "task": "Install nginx"}),
        "not json at all",
        json.dumps({"event": "failed", "host": "pi2", "task": "Install nginx", "message": "no space", "ignored": False}),
        json.dumps({"event": "failed", "host": "pi1", "task": "Probe", "message": "x", "ignored": True}),
        json.dumps({"event": "ok", "host": "pi1", "task": "Say", "action": "ansible.builtin.debug", "message": "hi"}),
        json.dumps({"event": "stats", "hosts": {"pi1": {"ok": 9, "changed": 0}, "pi2": {"ok": 2, "failures": 1}}}),
    ]
    for line in lines:
        event = parse_event(line)
        if event:
            absorb(result, event)
    assert result.failures == [("pi2", "Install nginx", "no space")]
    assert result.notes == [("pi1", "hi")]
    assert result.stats["pi1"].changed == 0 and result.stats["pi2"].failures == 1
    assert result.changed == 0
