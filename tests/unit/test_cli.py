"""The command line: documented exit codes, one-line errors, no password in argv."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from pi_stream.cli import main
from pi_stream.errors import ExitStatus


def run_cli(args, monkeypatch, capsys, stdin: str = ""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_init_user_render_round_trip(tmp_path, monkeypatch, capsys):
    site = str(tmp_path / "mysite")
    assert run_cli(["init", site, "--host", "192.0.2.9"], monkeypatch, capsys)[0] == 0
    status, _, err = run_cli(["render", site, "-o", str(tmp_path / "out")], monkeypatch, capsys)
    assert status == ExitStatus.INVALID_SITE and "pi-stream user add" in err
    assert run_cli(["user", "add", site, "alice", "--password-stdin"], monkeypatch, capsys, "long password\n")[0] == 0
    status, out, _ = run_cli(["render", site, "-o", str(tmp_path / "out")], monkeypatch, capsys)
    assert status == 0 and "rendered" in out
    assert (tmp_path / "out" / "pi1" / "etc" / "nginx" / "nginx.conf").is_file()
    assert run_cli(["user", "list", site], monkeypatch, capsys)[1] == "alice\tall cameras\tpassword\n"
    assert run_cli(["user", "add", site, "bob", "--password-stdin"], monkeypatch, capsys, "bob's password\n")[0] == 0
    site_yml = Path(site) / "site.yml"
    site_yml.write_text(site_yml.read_text() + "viewers:\n  bob: {cameras: [testcam]}\n")
    assert run_cli(["user", "list", site], monkeypatch, capsys)[1] == "alice\tall cameras\tpassword\nbob\ttestcam\tpassword\n"


def test_init_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    site = str(tmp_path / "s")
    run_cli(["init", site], monkeypatch, capsys)
    status, _, err = run_cli(["init", site], monkeypatch, capsys)
    assert status == ExitStatus.ERROR and "--force" in err


def test_usage_error_is_2(monkeypatch, capsys):
    assert run_cli(["render"], monkeypatch, capsys)[0] == ExitStatus.USAGE


def test_invalid_site_lists_all_problems_and_exits_3(tmp_path, monkeypatch, capsys):
    site = tmp_path / "s"
    run_cli(["init", str(site)], monkeypatch, capsys)
    text = (site / "site.yml").read_text().replace("cameras:", "camras:")
    (site / "site.yml").write_text(text)
    status, _, err = run_cli(["render", str(site), "-o", str(tmp_path / "o")], monkeypatch, capsys)
    assert status == ExitStatus.INVALID_SITE
    assert "camras: unknown key (did you mean 'cameras'?)" in err
    assert "viewers.htpasswd" in err, "every problem at once, not only the first"


def test_deploy_to_unreachable_host_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    site = tmp_path / "s"
    run_cli(["init", str(site), "--host", "127.0.0.1"], monkeypatch, capsys)
    (site / "inventory.yml").write_text("all:\n  hosts:\n    pi1:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n")
    run_cli(["user", "add", str(site), "alice", "--password-stdin"], monkeypatch, capsys, "long password\n")
    status, _, err = run_cli(["deploy", str(site)], monkeypatch, capsys)
    assert status == ExitStatus.UNREACHABLE
    assert "pi1 (127.0.0.1:9): SSH unreachable" in err and "nothing was changed" in err
    assert not (site / ".pi-stream" / "runs").exists(), "no Ansible run starts when a host is down"


def broken_site(tmp_path: Path, monkeypatch, capsys) -> Path:
    site = tmp_path / "s"
    run_cli(["init", str(site), "--host", "192.0.2.9"], monkeypatch, capsys)
    run_cli(["user", "add", str(site), "alice", "--password-stdin"], monkeypatch, capsys, "long password\n")
    return site


# Each: what the file holds, and what the one-line error must say.
NOT_TEXT = {
    "garbage": (bytes(range(256)) * 4, ("not UTF-8", "save it as UTF-8")),
    "utf16-bom": ("cameras:\n  - {name: a, source: {type: testsrc}}\n".encode("utf-16"), ("UTF-16", "save it as UTF-8")),
    "nul-bytes": (b"name: a\x00b\n", ("U+0000", "line 1, column 8")),
}


@pytest.mark.parametrize(
    ("file", "name"),
    # NUL bytes are valid UTF-8: YAML refuses them; in viewers.htpasswd they make a line that is no hash (test_site).
    [(file, name) for file in ("site.yml", "inventory.yml", "viewers.htpasswd") for name in sorted(NOT_TEXT)
     if (file, name) != ("viewers.htpasswd", "nul-bytes")],
)
def test_a_file_that_is_not_text_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys, file, name):
    """Found by trying it as a new user would: a traceback with exit 1 instead of the site error."""
    site = broken_site(tmp_path, monkeypatch, capsys)
    content, words = NOT_TEXT[name]
    (site / file).write_bytes(content)
    (site / file).chmod(0o600)
    status, _, err = run_cli(["render", str(site), "-o", str(tmp_path / "o")], monkeypatch, capsys)
    assert status == ExitStatus.INVALID_SITE, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if file in line]
    assert len(lines) == 1 and all(word in lines[0] for word in words), err
    assert len(err.splitlines()) == len([line for line in err.splitlines() if line.startswith("error: ")]), "one line per problem"


@pytest.mark.parametrize(("text", "says"), [("", "empty"), ("- a\n- b\n", "a list"), ("just words\n", "a string")])
def test_a_site_yml_without_a_mapping_gets_one_error_not_two(tmp_path, monkeypatch, capsys, text, says):
    """An empty file or a list at the top: that one problem, not also a redundant "no cameras"."""
    site = broken_site(tmp_path, monkeypatch, capsys)
    (site / "site.yml").write_text(text)
    status, _, err = run_cli(["render", str(site), "-o", str(tmp_path / "o")], monkeypatch, capsys)
    assert status == ExitStatus.INVALID_SITE
    lines = [line for line in err.splitlines() if "site.yml" in line]
    assert len(lines) == 1 and says in lines[0], err


def test_user_commands_on_a_viewers_file_that_is_not_text_exit_3(tmp_path, monkeypatch, capsys):
    site = broken_site(tmp_path, monkeypatch, capsys)
    (site / "viewers.htpasswd").write_bytes(bytes(range(256)))
    status, _, err = run_cli(["user", "add", str(site), "bob", "--password-stdin"], monkeypatch, capsys, "bob's password\n")
    assert status == ExitStatus.INVALID_SITE and "not UTF-8" in err and "Traceback" not in err
    assert run_cli(["user", "list", str(site)], monkeypatch, capsys)[0] == ExitStatus.INVALID_SITE


# --- a real Pi: unreachable hosts, prompts with no terminal, init for Raspberry Pi OS, --help ---


def unreachable_site(tmp_path: Path, monkeypatch, capsys) -> Path:
    """A site whose one Pi is a closed port on loopback: refused at once, no lab needed."""
    site = broken_site(tmp_path, monkeypatch, capsys)
    (site / "inventory.yml").write_text("all:\n  hosts:\n    pi1:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n")
    return site


@pytest.mark.parametrize("command", [["deploy"], ["verify"], ["status"]])
def test_an_unreachable_host_is_the_same_one_line_error_and_exit_6_everywhere(tmp_path, monkeypatch, capsys, command):
    """verify and status probe the hosts as deploy does: not a testinfra repr in a failed check (exit 5)."""
    site = unreachable_site(tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("PI_STREAM_PASSWORD", "long password")
    status, out, err = run_cli([*command, str(site)], monkeypatch, capsys)
    assert status == ExitStatus.UNREACHABLE, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]  # deploy says what it is about to do first
    assert lines[0] == "error: pi1 (127.0.0.1:9): SSH unreachable: Connection refused", err
    assert len(lines) == 2 and "check the address in inventory.yml" in lines[1], err
    assert "CommandResult" not in err + out and "Traceback" not in err


def test_a_password_prompt_with_no_terminal_says_how_to_pass_it_and_exits_2(tmp_path, monkeypatch, capsys):
    """In CI or under `< /dev/null` it was "error: interrupted", 130."""
    site = str(broken_site(tmp_path, monkeypatch, capsys))
    status, _, err = run_cli(["user", "add", site, "bob"], monkeypatch, capsys)
    assert status == ExitStatus.USAGE and "--password-stdin" in err and "interrupted" not in err, err
    status, _, err = run_cli(["user", "add", site, "bob", "--password-stdin"], monkeypatch, capsys, "")
    assert status == ExitStatus.USAGE and "nothing on stdin" in err, "an empty stdin is no password, not an empty one"
    monkeypatch.delenv("PI_STREAM_PASSWORD", raising=False)
    status, _, err = run_cli(["verify", site], monkeypatch, capsys)
    assert status == ExitStatus.USAGE and "--password-stdin" in err and "PI_STREAM_PASSWORD" in err, err
    assert len(err.splitlines()) == 1


def test_user_add_under_dev_null_in_a_real_process_exits_2(tmp_path, monkeypatch, capsys):
    import subprocess

    site = str(broken_site(tmp_path, monkeypatch, capsys))
    result = subprocess.run([sys.executable, "-m", "pi_stream", "user", "add", site, "bob"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitStatus.USAGE, result
    assert "--password-stdin" in result.stderr and "Password:" not in result.stdout + result.stderr


def test_prompts_are_still_asked_on_a_terminal(tmp_path, monkeypatch, capsys):
    site = str(broken_site(tmp_path, monkeypatch, capsys))
    import pi_stream.cli

    monkeypatch.setattr(pi_stream.cli, "has_terminal", lambda: True)
    monkeypatch.setattr(pi_stream.cli.click, "prompt", lambda text, **kwargs: "bob's long password")
    assert run_cli(["user", "add", site, "bob"], monkeypatch, capsys)[0] == ExitStatus.OK
    assert "bob" in run_cli(["user", "list", site], monkeypatch, capsys)[1]


def test_init_fits_raspberry_pi_os_a_sudo_user_not_root(tmp_path, monkeypatch, capsys):
    import yaml

    site = tmp_path / "my-cameras"
    status, out, _ = run_cli(["init", str(site)], monkeypatch, capsys)
    assert status == ExitStatus.OK
    inventory = yaml.safe_load((site / "inventory.yml").read_text())
    # ansible_become: testinfra (verify, status) reads it too, and sudoes as the playbook does; checked in a lab as user pi
    assert inventory["all"]["hosts"]["pi1"] == {"ansible_host": "raspberrypi.local", "ansible_user": "pi", "ansible_become": True}
    for step in ("ssh-copy-id pi@raspberrypi.local", f"pi-stream user add {site} NAME", f"pi-stream deploy {site}",
                 f"pi-stream verify {site}"):
        assert step in out, out
    run_cli(["init", str(tmp_path / "shop"), "--ssh-user", "admin", "--host", "192.0.2.7"], monkeypatch, capsys)
    assert yaml.safe_load((tmp_path / "shop" / "inventory.yml").read_text())["all"]["hosts"]["pi1"]["ansible_user"] == "admin"


def test_help_lists_the_commands_in_workflow_order_with_the_exit_codes(monkeypatch, capsys):
    from pi_stream.errors import MEANINGS

    status, out, _ = run_cli(["--help"], monkeypatch, capsys)
    assert status == ExitStatus.OK
    listed = [line.split()[0] for line in out.split("Commands:")[1].split("Exit codes")[0].splitlines() if line.strip()]
    assert listed == ["init", "user", "render", "deploy", "verify", "status", "remove", "fetch-sources", "lab", "demo"]
    for code in ExitStatus:
        assert f"{int(code):>3}  {MEANINGS[code]}" in out, code
    assert '_PI_STREAM_COMPLETE=bash_source pi-stream' in out
    assert [line.split()[0] for line in run_cli(["user", "--help"], monkeypatch, capsys)[1].split("Commands:")[1].splitlines()
            if line.strip()] == ["add", "passwd", "remove", "list"]


def every_command(group=None, path=()):
    import click

    from pi_stream.cli import cli

    group = group or cli
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("command", list(every_command()), ids=" ".join)
def test_every_command_has_an_example(monkeypatch, capsys, command):
    status, out, _ = run_cli([*command, "--help"], monkeypatch, capsys)
    assert status == ExitStatus.OK
    if command[0] != "lab":  # the lab's examples are on `pi-stream lab --help`
        assert "Example" in out and f"pi-stream {' '.join(command)}" in out.split("Options:")[0], out
        assert "Exit codes" in out and "  0  success" in out, out


def test_every_exit_code_has_one_meaning():
    from pi_stream.errors import MEANINGS, exit_codes_table

    assert set(MEANINGS) == set(ExitStatus)
    assert len(exit_codes_table().splitlines()) == len(ExitStatus)


def test_shell_completion_completes_commands(tmp_path):
    import subprocess

    env = {**__import__("os").environ, "_PI_STREAM_COMPLETE": "bash_complete", "COMP_WORDS": "pi-stream de", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "pi_stream"], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,deploy" in result.stdout.splitlines() and "plain,demo" in result.stdout.splitlines(), result


# --- deploy passes ansible-playbook's options on; remove asks first ---


def test_deploy_passes_limit_verbosity_become_password_and_tags_on(tmp_path, monkeypatch, capsys):
    from pi_stream import workflows
    from pi_stream.deploy import DeployResult

    site = broken_site(tmp_path, monkeypatch, capsys)
    calls = []
    monkeypatch.setattr(workflows, "deploy", lambda site, **kwargs: calls.append(kwargs) or DeployResult(ExitStatus.OK, 0))
    status, out, _ = run_cli(["deploy", str(site), "--limit", "pi1", "-vv", "-K", "--tags", "nginx"], monkeypatch, capsys)
    assert status == ExitStatus.OK
    (kwargs,) = calls
    assert (kwargs["limit"], kwargs["verbosity"], kwargs["ask_become_pass"], kwargs["tags"]) == ("pi1", 2, True, "nginx")
    assert kwargs["on_output"] is not None, "-v shows ansible-playbook's own output"
    assert "https://192.0.2.9/" in out, "the URL to open, as demo prints it"
    run_cli(["deploy", str(site), "--check"], monkeypatch, capsys)
    assert calls[1]["limit"] is None and calls[1]["verbosity"] == 0 and calls[1]["on_output"] is None
    assert "https://" not in capsys.readouterr().out


@pytest.fixture
def fake_remove(monkeypatch):
    """pi_stream.remove.run_remove, recorded (remove.py is another module's; only the asking is tested here)."""
    from types import SimpleNamespace

    from pi_stream.deploy import DeployResult

    calls = []
    module = SimpleNamespace(run_remove=lambda site, console, *, limit=None: calls.append(limit) or DeployResult(ExitStatus.OK, 0))
    monkeypatch.setitem(sys.modules, "pi_stream.remove", module)
    return calls


def test_remove_asks_first_and_refuses_without_a_terminal(tmp_path, monkeypatch, capsys, fake_remove):
    import pi_stream.cli

    site = str(broken_site(tmp_path, monkeypatch, capsys))
    status, _, err = run_cli(["remove", site], monkeypatch, capsys)
    assert status == ExitStatus.USAGE and "--yes" in err and "pi1 (192.0.2.9)" in err and fake_remove == []
    monkeypatch.setattr(pi_stream.cli, "has_terminal", lambda: True)
    status, out, _ = run_cli(["remove", site], monkeypatch, capsys, "n\n")
    assert status == ExitStatus.ERROR and "nothing was removed" in out and fake_remove == []
    assert run_cli(["remove", site, "--limit", "pi1"], monkeypatch, capsys, "y\n")[0] == ExitStatus.OK
    monkeypatch.setattr(pi_stream.cli, "has_terminal", lambda: False)
    assert run_cli(["remove", site, "--yes"], monkeypatch, capsys)[0] == ExitStatus.OK
    assert fake_remove == ["pi1", None]


def test_the_urls_to_open_are_each_pis_page_and_each_relays_origin(make_site):
    from pi_stream.site import load_site
    from pi_stream.workflows import urls_to_open

    assert urls_to_open(load_site(make_site("relay"))) == [
        ("pi1", "https://192.168.1.10/"), ("relay1", "https://cams.example.org/"), ("relay2", "https://198.51.100.20/")
    ]
    site = load_site(make_site(web={"https": True, "https_port": 8443}))
    assert urls_to_open(site) == [("pi1", "https://192.0.2.10:8443/")]
    assert urls_to_open(load_site(make_site(web={"https": False, "http_port": 8080}))) == [("pi1", "http://192.0.2.10:8080/")]
    assert urls_to_open(load_site(make_site("relay")), load_site(make_site("relay")).relays[1:]) == [("relay2", "https://198.51.100.20/")]


def test_verify_prints_the_urls_once_every_check_passed(make_site, monkeypatch, capsys):
    from pi_stream import workflows
    from pi_stream.console import Console
    from pi_stream.site import load_site
    from pi_stream.verify import Check, VerifyResult

    monkeypatch.setattr(workflows, "check_logins", lambda *args: None)
    site = load_site(make_site())
    for ok in (True, False):
        monkeypatch.setattr(workflows, "verify_site", lambda *args, ok=ok, **kwargs: VerifyResult([Check("pi1", "nginx", ok)]))
        monkeypatch.setattr(workflows, "raise_if_gone", lambda *args: None)
        workflows.run_verify(site, site.viewers[0], "x", Console(show_progress=False))
        assert ("https://192.0.2.10/" in capsys.readouterr().out) is ok


def test_quiet_turns_progress_off(tmp_path, monkeypatch, capsys):
    """main() hands its console to the group: -q used to leave its progress on."""
    site = unreachable_site(tmp_path, monkeypatch, capsys)
    _, _, err = run_cli(["deploy", str(site)], monkeypatch, capsys)
    assert "deploying s to pi1" in err
    status, _, err = run_cli(["-q", "deploy", str(site)], monkeypatch, capsys)
    assert status == ExitStatus.UNREACHABLE and "deploying" not in err and "SSH unreachable" in err
