"""Ansible content rules: one template engine, documented variables, handlers that test first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pi_stream.site import load_site, role_vars

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


def yaml_files():
    return sorted([*ROOT.glob("roles/**/*.yml"), *ROOT.glob("playbooks/**/*.yml")])


def test_roles_never_render_templates():
    """One engine, one template set (STYLE D2): roles copy from the bundle."""
    assert not list(ROOT.glob("roles/*/templates"))
    for path in yaml_files():
        text = path.read_text()
        assert not re.search(r"^\s*(ansible\.builtin\.)?template:", text, re.MULTILINE), path


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_argument_specs_agree(role):
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(specs), f"{role.name}: documented defaults and argument specs differ"
    for name in defaults:
        assert name.startswith(role.name + "_"), f"{name} is not prefixed with the role name"


def test_site_exports_exactly_what_roles_accept(make_site):
    """site.py's role variables are options of the role that receives them, so the two cannot drift."""
    site = load_site(make_site("mixed-http"))
    for role, values in role_vars(site, "pi1").items():
        specs = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
        options = set(specs["argument_specs"]["main"]["options"])
        assert set(values) <= options, f"{role}: {set(values) - options} not in argument_specs"


@pytest.mark.parametrize("role", ["nginx_rtmp", "fail2ban"])
def test_test_handler_is_defined_before_the_reload(role):
    handlers = yaml.safe_load((ROOT / "roles" / role / "handlers/main.yml").read_text())
    names = [h["name"] for h in handlers]
    test = next(i for i, n in enumerate(names) if n.startswith("Test "))
    reload_ = next(i for i, n in enumerate(names) if n.startswith("Reload "))
    assert test < reload_ and handlers[test]["notify"] == names[reload_]
    assert "|| true" not in (ROOT / "roles" / role / "handlers/main.yml").read_text()


def test_no_shell_module_no_or_true_no_fake_creates():
    for path in yaml_files():
        text = path.read_text()
        assert not re.search(r"^\s*(ansible\.builtin\.)?shell:", text, re.MULTILINE), path
        assert "|| true" not in text, path
        for match in re.finditer(r"creates: (\S+)", text):
            # Allowed only where the same command writes that path (the self-signed key).
            assert match.group(1) in text.split("creates:")[0], f"{path}: creates: {match.group(1)}"


def test_modules_are_fully_qualified():
    short = re.compile(r"^\s*-?\s*(apt|copy|file|command|service|systemd|debug|fail|assert|stat|find|set_fact):\s*$",
                       re.MULTILINE)
    for path in ROOT.glob("roles/*/tasks/*.yml"):
        assert not short.search(path.read_text()), path


def test_playbook_syntax(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    pi1:\n      ansible_host: 192.0.2.1\n")
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(ansible_playbook), "--syntax-check", "-i", str(inventory), str(ROOT / "playbooks/site.yml")],
        capture_output=True, text=True, timeout=120, env={"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
