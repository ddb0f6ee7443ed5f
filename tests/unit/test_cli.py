"""The command line: documented exit codes, one-line errors, no password in argv."""

from __future__ import annotations

from pathlib import Path
import io
import sys

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
