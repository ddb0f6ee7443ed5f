"""deploy: argv lists, stats from structured events, failures kept per host."""

from __future__ import annotations

import json

import yaml

from pi_stream.deploy import (
    DEPLOY_TIMEOUT_SECONDS,
    NGINX_BUILD_TIMEOUT_SECONDS,
    OME_BUILD_TIMEOUT_SECONDS,
    ROLES_DIR,
    DeployResult,
    absorb,
    deploy_timeout,
    parse_event,
    playbook_argv,
)
from pi_stream.errors import ExitStatus
from pi_stream.site import load_site
from tests.conftest import EXAMPLE_SITES


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


def test_a_deploy_hashes_each_source_tarball_once(tmp_path, monkeypatch):
    """`pi-stream deploy` checks the tarballs before Ansible starts, and tells the playbook, whose own check
    (there for plain ansible-playbook users) would hash the same files again."""
    import hashlib

    from pi_stream import nginx_source, workflows
    from pi_stream.console import Console
    from tests.conftest import write_site

    tarballs = {"nginx.tar.gz": b"nginx bytes\n", "rtmp.tar.gz": b"module bytes\n"}
    source = {
        key: {"version": version, "file": name, "sha256": hashlib.sha256(content).hexdigest()}
        for (key, version), (name, content) in zip((("nginx", "1.26.3"), ("rtmp_module", "1.2.2")), tarballs.items(), strict=True)
    }
    directory = write_site(tmp_path / "site", {"name": "s", "cameras": [{"name": "cam", "source": {"type": "testsrc"}}],
                                               "nginx": {"install_method": "source", "source": source}})
    for name, content in tarballs.items():
        (directory / name).write_bytes(content)
    monkeypatch.setenv("PI_STREAM_CACHE", str(tmp_path / "cache"))
    hashed: list[str] = []  # names of the files hashed, in order
    real_sha256_of = nginx_source.sha256_of
    monkeypatch.setattr(nginx_source, "sha256_of", lambda path: hashed.append(path.name) or real_sha256_of(path))
    calls = []
    monkeypatch.setattr(workflows, "deploy", lambda site, **kwargs: calls.append(kwargs) or DeployResult(ExitStatus.OK, 0))

    workflows.run_deploy(load_site(directory), Console(show_progress=False))
    assert len(hashed) == 2, hashed  # copied into the cache, hashed there
    workflows.run_deploy(load_site(directory), Console(show_progress=False))
    assert len(hashed) == 4 and sorted(hashed[2:]) == ["nginx.tar.gz", "rtmp.tar.gz"], "from the cache, checked again once"
    assert [c["sources_checked"] for c in calls] == [True, True]
    assert "pi_stream_sources_checked=true" in playbook_argv(load_site(directory), sources_checked=True)
    assert "pi_stream_sources_checked=true" not in playbook_argv(load_site(directory))


def test_the_playbooks_source_check_is_skipped_only_when_deploy_did_it():
    import yaml

    from pi_stream.deploy import PLAYBOOK

    tasks = yaml.safe_load(PLAYBOOK.read_text(encoding="utf-8"))[1]["tasks"]  # [0] makes the WireGuard keys
    (fetch,) = [t for t in tasks if "fetch-sources" in t["ansible.builtin.command"]["argv"]]
    assert fetch["when"] == "not (pi_stream_sources_checked | default(false) | bool)"


def test_ansible_runs_without_ssh_compression_both_ways(make_site):
    """Modules travel zipped already: -C (Ansible's default) only spends CPU on the controller and the Pi."""
    import configparser

    from pi_stream.deploy import SSH_ARGS, playbook_env
    from pi_stream.share import ANSIBLE_CFG

    assert "-C" not in SSH_ARGS.split() and "ControlPersist=60s" in SSH_ARGS
    assert playbook_env(load_site(make_site()))["ANSIBLE_SSH_ARGS"] == SSH_ARGS
    config = configparser.ConfigParser()
    config.read(ANSIBLE_CFG)
    assert config["ssh_connection"]["ssh_args"] == SSH_ARGS, "plain ansible-playbook gets the same"


def role_default(role: str, name: str) -> int:
    return yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text())[name]


def test_a_deploy_that_builds_may_run_as_long_as_its_builds_may(make_site):
    """The run's limit covers each build the roles allow, so pi-stream never stops a build Ansible still waits for."""
    assert role_default("nginx_rtmp", "nginx_rtmp_build_timeout_seconds") == NGINX_BUILD_TIMEOUT_SECONDS
    assert role_default("webrtc_ome", "webrtc_ome_build_timeout_seconds") == OME_BUILD_TIMEOUT_SECONDS
    assert deploy_timeout(load_site(make_site("two-pis"))) == DEPLOY_TIMEOUT_SECONDS
    assert deploy_timeout(load_site(make_site("webrtc"))) == DEPLOY_TIMEOUT_SECONDS + OME_BUILD_TIMEOUT_SECONDS
    both = load_site(make_site("webrtc", nginx={"install_method": "source"}))
    assert deploy_timeout(both) == DEPLOY_TIMEOUT_SECONDS + NGINX_BUILD_TIMEOUT_SECONDS + OME_BUILD_TIMEOUT_SECONDS
    webrtc = EXAMPLE_SITES["webrtc"][0]["webrtc"]
    image = "docker.io/airensoft/ovenmediaengine@sha256:" + "0" * 64
    in_a_container = load_site(make_site("webrtc", webrtc={**webrtc, "install_method": "container", "image": image}))
    assert deploy_timeout(in_a_container) == DEPLOY_TIMEOUT_SECONDS


def test_ansible_playbooks_own_options_are_passed_on_as_given(make_site):
    site = load_site(make_site())
    argv = playbook_argv(site, limit="pi1:!pi2", tags="nginx,fail2ban", verbosity=3, ask_become_pass=True)
    assert argv[argv.index("--limit") + 1] == "pi1:!pi2" and argv[argv.index("--tags") + 1] == "nginx,fail2ban"
    assert "-vvv" in argv and "--ask-become-pass" in argv
    plain = playbook_argv(site)
    assert not {"--limit", "--tags", "--ask-become-pass"} & set(plain) and not any(a.startswith("-v") for a in plain)


def names(hosts) -> list[str]:
    return [h.name for h in hosts]


def test_a_limit_selects_the_hosts_to_probe_as_ansible_would(make_site):
    from pi_stream.deploy import limited_hosts

    site = load_site(make_site("relay"))
    assert names(limited_hosts(site, None)) == ["pi1", "relay1", "relay2"]
    assert names(limited_hosts(site, "pi1")) == ["pi1"]
    assert names(limited_hosts(site, "relay*")) == ["relay1", "relay2"]
    assert names(limited_hosts(site, "all:!relay2")) == ["pi1", "relay1"]
    assert names(limited_hosts(site, "!pi1")) == ["relay1", "relay2"]
    assert names(limited_hosts(site, "pi_stream_relays:&relay2")) == ["relay2"]
    assert names(limited_hosts(site, "pi1,relay2")) == ["pi1", "relay2"]
    # What cannot be told here selects everything: the probe asks too much, never too little.
    for pattern in ("~pi.*", "@retry.txt", "my_own_group"):
        assert names(limited_hosts(site, pattern)) == ["pi1", "relay1", "relay2"], pattern


def test_a_deploy_probes_its_relays_and_the_build_hosts_it_uses(make_site, tmp_path):
    from pi_stream.deploy import deploy_hosts
    from tests.conftest import write_site

    site = load_site(make_site("relay"))
    assert names(deploy_hosts(site)) == ["pi1", "relay1", "relay2"]
    assert names(deploy_hosts(site, "relay2")) == ["relay2", "relay1"], "relay2 reads the site key from relay1"
    assert names(deploy_hosts(site, "pi1")) == ["pi1"]
    hosts = {"pi1": {"ansible_host": "192.0.2.10"},
             "pi_stream_builders": {"hosts": {"builder": {"ansible_host": "192.0.2.30"}, "spare": {"ansible_host": "192.0.2.31"}}}}
    built = load_site(write_site(tmp_path / "built", {"name": "b", "cameras": [{"name": "c", "source": {"type": "testsrc"}}],
                                                      "nginx": {"install_method": "source", "source": {"build_host": "builder"}}}, hosts))
    assert names(deploy_hosts(built, "pi1")) == ["pi1", "builder"], "the build is delegated whatever the limit; spare is unused"


def test_ssh_failures_from_testinfra_are_told_from_other_errors():
    from types import SimpleNamespace

    from pi_stream.deploy import ssh_failure

    refused = SimpleNamespace(rc=255, stderr="Warning: Permanently added ...\r\npi@192.0.2.9: Permission denied (publickey,password).\r\n")
    assert ssh_failure(RuntimeError(refused)) == "pi@192.0.2.9: Permission denied (publickey,password)."
    assert ssh_failure(RuntimeError(SimpleNamespace(rc=1, stderr="cat: no such file"))) == ""
    assert ssh_failure(RuntimeError("No inventory was parsed")) == "" and ssh_failure(ValueError("x")) == ""


def test_permission_denied_says_to_put_the_key_on_the_host():
    from pi_stream.deploy import unreachable_error

    error = unreachable_error(["pi1 (192.0.2.9:22): SSH failed: pi@192.0.2.9: Permission denied (publickey)."], "nothing was verified")
    assert error.status == ExitStatus.UNREACHABLE and "ssh-copy-id" in error.message
    assert "ssh-copy-id" not in unreachable_error(["pi1 (192.0.2.9:22): SSH unreachable: Connection refused"], "x").message


FAKE_PLAYBOOK = """
import json, os, sys
print("Using /etc/ansible.cfg as config file")  # what ansible-playbook -v says in its own words
print(json.dumps({"event": "stats", "hosts": {"pi1": {"ok": 3}}}))
print(json.dumps({"stdin_is_devnull": os.path.samestat(os.fstat(0), os.stat(os.devnull))}), file=sys.stderr)
"""


def test_deploy_passes_ansibles_own_output_on_and_gives_it_the_terminal_only_for_a_become_password(make_site, monkeypatch):
    import sys

    from pi_stream import deploy as deploy_module

    site = load_site(make_site())
    monkeypatch.setattr(deploy_module, "check_logins", lambda *args, **kwargs: None)
    started = []
    real_stream = deploy_module.proc.stream

    def stream(argv, **kwargs):
        started.append((argv, kwargs["terminal"]))
        return real_stream([sys.executable, "-c", FAKE_PLAYBOOK], **kwargs)

    monkeypatch.setattr(deploy_module.proc, "stream", stream)
    output: list[str] = []
    result = deploy_module.deploy(site, verbosity=1, ask_become_pass=True, on_output=output.append)
    assert result.status == ExitStatus.OK and result.stats["pi1"].ok == 3
    assert output == ["Using /etc/ansible.cfg as config file"]
    assert started[0][1] is True and "--ask-become-pass" in started[0][0] and "-v" in started[0][0]
    plain = deploy_module.deploy(site)
    assert started[1][1] is False
    assert '"stdin_is_devnull": true' in (plain.run_dir / "ansible-stderr.log").read_text(), "without -K, ansible's stdin is its own"


def test_a_refused_login_stops_a_deploy_before_ansible_starts_as_it_stops_verify(tmp_path, monkeypatch):
    """No key on the Pi (no ssh-copy-id): one line with the fix, not an UNREACHABLE task after the controller's plays."""
    from types import SimpleNamespace

    import pytest

    from pi_stream import deploy as deploy_module
    from pi_stream.errors import UnreachableError
    from tests.unit.test_status import loopback_site, ssh_banner_server

    server = ssh_banner_server()
    try:
        site = loopback_site(tmp_path, server.getsockname()[1])
        denied = RuntimeError(SimpleNamespace(rc=255, stderr="pi@127.0.0.1: Permission denied (publickey).\r\n"))
        monkeypatch.setattr(deploy_module, "testinfra_host", lambda site, host: SimpleNamespace(run=lambda *args: (_ for _ in ()).throw(denied)))
        with pytest.raises(UnreachableError) as raised:
            deploy_module.deploy(site)
        assert raised.value.message.endswith("nothing was changed; check ansible_user in inventory.yml and that your SSH key is on the host "
                                             "(ssh-copy-id USER@HOST)")
        assert not (site.directory / ".pi-stream" / "runs").exists()
    finally:
        server.close()
