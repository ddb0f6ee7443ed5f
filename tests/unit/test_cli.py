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
    assert run_cli(["user", "list", site], monkeypatch, capsys)[1] == "alice\tall cameras\n"
    assert run_cli(["user", "add", site, "bob", "--password-stdin"], monkeypatch, capsys, "bob's password\n")[0] == 0
    site_yml = Path(site) / "site.yml"
    site_yml.write_text(site_yml.read_text() + "viewers:\n  bob: {cameras: [testcam]}\n")
    assert run_cli(["user", "list", site], monkeypatch, capsys)[1] == "alice\tall cameras\nbob\ttestcam\n"


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
