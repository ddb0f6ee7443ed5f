"""roles/bundle_files, run by the real ansible-playbook on this machine against files in a temporary directory.

The roles copy only what bundle_files says differs, so what it misses would never
reach a Pi: content, mode and owner must each count, and a missing file too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def differ(tmp_path: Path, wanted: list[dict]) -> list[str]:
    """bundle_files_differ for `wanted`, with the bundle in tmp_path/bundle and the host's files in tmp_path/host."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        # What playbooks/group_vars/all.yml gives every role; the role's own default names it.
        "vars": {"pi_stream_host_bundle": str(tmp_path / "bundle")},
        "tasks": [
            {"name": "Compare", "ansible.builtin.import_role": {"name": "bundle_files"},
             "vars": {"bundle_files_src": str(tmp_path / "bundle"), "bundle_files_dest": str(tmp_path / "host"),
                      "bundle_files_wanted": wanted}},
            {"name": "Say", "ansible.builtin.debug": {"msg": "{{ bundle_files_differ | to_json }}"}},
        ],
    }]))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_STDOUT_CALLBACK": "pi_stream_events",
           "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "pi_stream" / "ansible_plugins" / "callback"), "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
            str(playbook)]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    (said,) = [e["message"] for e in events if e.get("task") == "Say" and e["event"] == "ok"]
    return sorted(json.loads(said))


def put(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def test_missing_changed_and_wrong_mode_files_differ_and_identical_ones_do_not(tmp_path):
    bundle, host = tmp_path / "bundle", tmp_path / "host"
    texts = {"etc/a.conf": "same\n", "etc/b.conf": "new text\n", "etc/sub/c.conf": "absent on the host\n",
             "etc/d.conf": "right text, wrong mode\n", "usr/e.py": "#!/usr/bin/python3\n"}
    for path, text in texts.items():
        put(bundle, path, text)
    put(host, "etc/a.conf", "same\n")
    put(host, "etc/b.conf", "old text\n")
    put(host, "etc/d.conf", "right text, wrong mode\n", 0o600)
    put(host, "usr/e.py", "#!/usr/bin/python3\n", 0o755)
    # Same names elsewhere on the host are not the wanted files.
    put(host, "usr/c.conf", "absent on the host\n")
    wanted = [{"path": p, "mode": "0644"} for p in texts if p != "usr/e.py"] + [{"path": "usr/e.py", "mode": "0755"}]
    assert differ(tmp_path, wanted) == ["etc/b.conf", "etc/d.conf", "etc/sub/c.conf"]


def test_the_owner_counts_and_a_trailing_newline_is_content(tmp_path):
    bundle, host = tmp_path / "bundle", tmp_path / "host"
    put(bundle, "etc/x.conf", "value\n")
    put(host, "etc/x.conf", "value\n")
    put(bundle, "etc/y.conf", "no newline at the end")
    put(host, "etc/y.conf", "no newline at the end\n")
    os.chown(host / "etc/x.conf", 0, 0)
    assert differ(tmp_path, [{"path": "etc/x.conf", "mode": "0644"}]) == []
    assert differ(tmp_path, [{"path": "etc/x.conf", "mode": "0644", "group": "adm"}]) == ["etc/x.conf"]
    assert differ(tmp_path, [{"path": "etc/y.conf", "mode": "0644"}]) == ["etc/y.conf"]
