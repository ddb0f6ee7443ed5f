"""Ansible content rules: one template engine, documented variables, handlers that test first.

Static checks of roles/ and playbooks/ (no root, no target host). The YAML is
parsed, not grepped, wherever the rule is about a task's module or keywords.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pi_stream.site import load_site, role_vars

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
ROLE_ORDER = [
    "firewall", "wireguard_link", "viewer_auth", "dvr_proxy", "nginx_rtmp", "webrtc_ome", "camera_capture", "fail2ban", "security_updates",
]
BIN = Path(sys.executable).parent
# Every service whose configuration must pass its own test before a reload or restart.
CONFIG_TESTS = {"nginx": ["nginx", "-t"], "fail2ban": ["fail2ban-client", "-t"], "wg-quick@pistream": ["wg-quick", "strip"]}


def yaml_files() -> list[Path]:
    return sorted([*ROOT.glob("roles/**/*.yml"), *ROOT.glob("playbooks/**/*.yml")])


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def task_keywords() -> frozenset[str]:
    from ansible.playbook.handler import Handler

    return frozenset(Handler.fattributes) | {"local_action", "block", "rescue", "always"}


KEYWORDS = task_keywords()


def walk(tasks) -> Iterator[dict]:
    """Every task in a task list, descending into block/rescue/always."""
    for task in tasks or []:
        yield task
        for section in ("block", "rescue", "always"):
            yield from walk(task.get(section))


def module_of(task: dict) -> tuple[str, object]:
    names = [k for k in task if k not in KEYWORDS and not k.startswith("with_")]
    if "block" in task:
        return "block", None
    assert len(names) == 1, f"cannot tell the module of task {task.get('name')!r}: {names}"
    return names[0], task[names[0]]


def role_tasks(kind: str = "tasks") -> Iterator[tuple[Path, dict]]:
    for path in sorted(ROOT.glob(f"roles/*/{kind}/*.yml")):
        for task in walk(load(path)):
            yield path, task


def play_tasks() -> Iterator[tuple[Path, dict]]:
    for play in load(ROOT / "playbooks/site.yml"):
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            for task in walk(play.get(section)):
                yield ROOT / "playbooks/site.yml", task


def all_tasks() -> Iterator[tuple[Path, dict]]:
    yield from role_tasks("tasks")
    yield from role_tasks("handlers")
    yield from play_tasks()


def argv_of(task: dict) -> list[str]:
    module, args = module_of(task)
    if module.rsplit(".", 1)[-1] != "command":
        return []
    return [str(a) for a in args.get("argv", [])] if isinstance(args, dict) else str(args).split()


def listify(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# --- One engine, one template set (STYLE D2) -----------------------------------------


def test_roles_never_render_templates():
    """Roles copy from the bundle; only pi_stream.render renders (STYLE D2, C7)."""
    assert not list(ROOT.glob("roles/*/templates")), "roles must not have templates/ directories"
    for path, task in all_tasks():
        module, _ = module_of(task)
        assert module.rsplit(".", 1)[-1] != "template", f"{path}: {task.get('name')}"
    for path in yaml_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(ansible\.builtin\.)?template:", text, re.MULTILINE), path
        assert not re.search(r"lookup\(\s*['\"](ansible\.builtin\.)?template", text), path


def test_role_files_come_from_the_bundle():
    """Every copy of an appliance file names its role's *_files directory (or a controller path from _vars)."""
    for path, task in role_tasks():
        module, args = module_of(task)
        if module != "ansible.builtin.copy" or "src" not in args:
            continue
        role = path.parts[path.parts.index("roles") + 1]
        src = args["src"]
        assert src.startswith(("{{ " + role + "_files }}/", "{{ " + role + "_")), f"{path}: {task['name']}: {src}"


# --- Variables: documented defaults, argument specs, names (STYLE D3 13, 14) ---------


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_argument_specs_agree(role):
    defaults = load(role / "defaults/main.yml") or {}
    specs = load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(specs), (
        f"{role.name}: only in defaults {set(defaults) - set(specs)}, only in argument_specs {set(specs) - set(defaults)}"
    )
    for name, spec in specs.items():
        assert name.startswith(role.name + "_"), f"{name} is not prefixed with the role name"
        assert spec.get("type"), f"{role.name}: {name} has no type"
        assert spec.get("description"), f"{role.name}: {name} has no description"
        assert "default" in spec, f"{role.name}: {name} has no default in argument_specs"
        assert spec["default"] == defaults[name], f"{role.name}: {name}: argument_specs default differs from defaults/main.yml"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_has_a_comment_above_it(role):
    lines = (role / "defaults/main.yml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_][a-z0-9_]*:", line):
            above = lines[number - 1] if number else ""
            assert above.startswith("#"), f"{role.name}/defaults/main.yml: {line.split(':')[0]} has no comment above it"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_meta(role):
    meta = load(role / "meta/main.yml")
    assert meta["galaxy_info"]["role_name"] == role.name
    assert meta["dependencies"] == []


def test_site_exports_exactly_what_roles_accept(make_site):
    """The site model's role variables (pi_stream/site/roles.py) are options of the role that receives them, so the two cannot drift."""
    site = load_site(make_site("mixed-http"))
    relay_site = load_site(make_site("relay"))
    for exported, roles in ((role_vars(site, "pi1"), ROLE_ORDER), (role_vars(relay_site, "pi1"), ROLE_ORDER),
                            (role_vars(relay_site, "relay2"), RELAY_ROLES)):
        assert sorted(exported) == sorted(roles)
        for role, values in exported.items():
            specs = load(ROOT / "roles" / role / "meta/argument_specs.yml")
            options = set(specs["argument_specs"]["main"]["options"])
            assert set(values) <= options, f"{role}: {set(values) - options} not in argument_specs"


# --- Handlers: test, then reload; daemon-reload before restarts (STYLE D3 15) --------


def handlers_of(role: Path) -> list[dict]:
    path = role / "handlers/main.yml"
    return (load(path) or []) if path.exists() else []


def reloads_of(handler: dict) -> str | None:
    """The service a handler reloads or restarts, if it is one with a config test."""
    module, args = module_of(handler)
    if module.rsplit(".", 1)[-1] not in ("systemd_service", "systemd", "service") or not isinstance(args, dict):
        return None
    if args.get("state") not in ("reloaded", "restarted"):
        return None
    name = str(args.get("name", "")).removesuffix(".service")
    return name if name in CONFIG_TESTS else None


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_reload_handlers_are_preceded_by_their_test(role):
    handlers = handlers_of(role)
    for index, handler in enumerate(handlers):
        service = reloads_of(handler)
        if service is None:
            continue
        tests = [
            (i, h) for i, h in enumerate(handlers[:index])
            if argv_of(h)[:2] == CONFIG_TESTS[service] and handler["name"] in listify(h.get("notify"))
        ]
        assert tests, f"{role.name}: {handler['name']!r} has no earlier handler running {CONFIG_TESTS[service]} that notifies it"
        test_index, test = tests[0]
        assert test.get("register"), f"{role.name}: {test['name']!r} must register its result"
        # The failure is reported with the tool's own words, by a handler listening to the test, before the reload.
        reporters = [
            h for h in handlers[test_index + 1:index]
            if test["name"] in listify(h.get("listen")) and module_of(h)[0] == "ansible.builtin.fail"
            and f"{test['register']}.stderr" in str(h)
        ]
        assert reporters, f"{role.name}: no handler between {test['name']!r} and {handler['name']!r} fails with its stderr"
    # A role may notify a later role's test handler (viewer_auth's token keys
    # are nginx configuration): handlers are play-wide, and that role flushes them.
    # (A helper role outside ROLE_ORDER, bundle_files, notifies nothing.)
    after = ROLE_ORDER.index(role.name) + 1 if role.name in ROLE_ORDER else len(ROLE_ORDER)
    later = [h for r in ROLE_ORDER[after:] for h in handlers_of(ROOT / "roles" / r)]
    for path, task in role_tasks():
        if role.name in path.parts:
            for name in listify(task.get("notify")):
                target = next((h for h in handlers + later if h["name"] == name), None)
                assert target is not None, f"{path}: notifies unknown handler {name!r}"
                assert reloads_of(target) is None, f"{path}: {task['name']!r} notifies {name!r}; notify the test handler"


def test_nginx_and_fail2ban_handlers_exist():
    for role, test, reload_ in [("nginx_rtmp", "Test nginx and reload", "Reload nginx"),
                                ("fail2ban", "Test fail2ban and reload", "Reload fail2ban")]:
        names = [h["name"] for h in handlers_of(ROOT / "roles" / role)]
        assert test in names and reload_ in names and names.index(test) < names.index(reload_), (role, names)


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_daemon_reload_handler_is_defined_before_restarts(role):
    handlers = handlers_of(role)
    daemon_reloads = [i for i, h in enumerate(handlers) if (module_of(h)[1] or {}).get("daemon_reload")]
    restarts = [i for i, h in enumerate(handlers) if (module_of(h)[1] or {}).get("state") in ("restarted", "reloaded")
                and not (module_of(h)[1] or {}).get("daemon_reload")]
    if daemon_reloads and restarts:
        assert max(daemon_reloads) < min(restarts), f"{role.name}: daemon-reload must be defined above the restarts"
    if role.name == "camera_capture":
        assert daemon_reloads, "camera_capture needs a daemon-reload handler"


def test_handlers_never_swallow_failures():
    for path, handler in role_tasks("handlers"):
        # Tolerated only under --check, where a fresh host lacks the units and packages.
        assert handler.get("ignore_errors", "{{ ansible_check_mode }}") == "{{ ansible_check_mode }}", path
        if handler.get("failed_when") is False:
            # Only a config test may do this, and only with a failing reporter (checked above).
            assert argv_of(handler)[:2] in CONFIG_TESTS.values(), f"{path}: {handler['name']}"


# --- Task style (STYLE C3, C4, D3 17, 18) ---------------------------------------------


def test_no_shell_module_no_or_true_no_fake_creates():
    for path in yaml_files():
        text = path.read_text(encoding="utf-8")
        # Short module names fail test_modules_are_fully_qualified; `shell:` alone may be a parameter (user's login shell).
        assert not re.search(r"ansible\.builtin\.(shell|raw):", text), path
        assert "|| true" not in text, path
    for path, task in all_tasks():
        module, args = module_of(task)
        assert module.rsplit(".", 1)[-1] not in ("shell", "raw", "script"), f"{path}: {task.get('name')}"
        creates = (args.get("creates") if isinstance(args, dict) else None) or (task.get("args") or {}).get("creates")
        if creates:
            # creates: may only name a file the command itself writes (not C4's /tmp/makefile).
            assert creates in argv_of(task), f"{path}: {task['name']!r}: creates: {creates} is not written by the command"


def test_modules_are_fully_qualified():
    for path, task in all_tasks():
        module, _ = module_of(task)
        if module != "block":
            assert module.count(".") >= 2, f"{path}: {task.get('name')!r} uses {module!r}, not a FQCN"


def test_tasks_are_named_as_sentences():
    for path, task in all_tasks():
        name = task.get("name", "")
        assert name and name[0].isupper(), f"{path}: unnamed or lower-case task {name!r}"


def test_modes_are_quoted_strings():
    for path, task in all_tasks():
        _, args = module_of(task)
        if isinstance(args, dict):
            for key in ("mode", "directory_mode"):
                if key in args:
                    assert isinstance(args[key], str), f"{path}: {task['name']!r}: {key} must be a quoted string"


def test_read_only_probes_work_in_check_mode():
    """A command that changes nothing also runs under --check, or check mode would skip it and learn nothing."""
    for path, task in [*role_tasks(), *play_tasks()]:
        if argv_of(task) and task.get("changed_when") is False:
            assert task.get("check_mode") is False, f"{path}: {task['name']!r} needs check_mode: false"


def test_tasks_touching_secrets_are_no_log():
    # Copies of secret files, and commands whose output is a secret (openssl writes its key to a file, not stdout).
    secret = re.compile(r"capture-sources|viewers|key\.pem|tls_key_src|token\.key|token-keys")
    found = []
    for path, task in role_tasks():
        module, args = module_of(task)
        copied = f"{args.get('src', '')} {args.get('dest', '')}" if module == "ansible.builtin.copy" else ""
        if secret.search(copied) or "nginx-map" in argv_of(task):
            found.append(task["name"])
            assert task.get("no_log") is True, f"{path}: {task['name']!r} handles a secret without no_log"
    assert len(found) >= 6, found  # TLS key, viewers, site key, token keys (print + copy), camera credentials


def test_playbook_loads_secrets_with_no_log_and_the_bundle_holds_none(make_site, tmp_path):
    loads = [t for t in load(ROOT / "playbooks/tasks/host-bundle.yml") if "secrets" in str(t.get("ansible.builtin.include_vars", ""))]
    assert loads and loads[0].get("no_log") is True
    from pi_stream.render import render_to, write_secrets

    site = load_site(make_site("mixed-http"))
    render_to(site, tmp_path / "bundle")
    for path in (tmp_path / "bundle").rglob("*"):
        if path.is_file():
            assert "p@ss" not in path.read_text() and "p%40ss" not in path.read_text(), path
    write_secrets(site, tmp_path / "secrets")
    assert oct((tmp_path / "secrets").stat().st_mode & 0o777) == "0o700"
    secret_file = tmp_path / "secrets" / "pi1.yml"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    credentials = load(secret_file)["camera_capture_credentials"]
    assert credentials == {"door": "rtsp://admin:p%40ss%3Aw%2Frd%25%23%21@192.0.2.20:554/Streaming/Channels/101"}


# --- The playbook ---------------------------------------------------------------------


RELAY_ROLES = ["firewall", "wireguard_link", "viewer_auth", "dvr_proxy", "nginx_rtmp", "fail2ban", "security_updates"]


def test_playbook_shape():
    keys, render, provision = load(ROOT / "playbooks/site.yml")
    # Keys first: rendering a relay site needs every host's public key, made on the host.
    assert keys["hosts"] == "all:!pi_stream_builders"
    assert [t["ansible.builtin.include_role"] for t in keys["tasks"]] == [{"name": "wireguard_link", "tasks_from": "keys"}]
    # Before that, on the controller: the pi-stream that renders, of the playbooks' version (tests/unit/test_collection.py).
    assert [t["ansible.builtin.import_tasks"] for t in keys["pre_tasks"]] == ["tasks/pi-stream-command.yml"]
    assert render["hosts"] == "all" and render["gather_facts"] is False
    # On the controller, before any host changes: render the bundle, then fetch and check nginx's sources,
    # with the pi-stream chosen first (`python -m pi_stream` or `pi-stream`).
    argvs = [" ".join(task["ansible.builtin.command"]["argv"].split()) for task in render["tasks"]]
    assert argvs == [
        "{{ hostvars['localhost']['pi_stream_command'] + ['render', pi_stream_site, '-o', pi_stream_bundle, "
        "'--secrets-dir', pi_stream_secrets] }}",
        "{{ hostvars['localhost']['pi_stream_command'] + ['fetch-sources', pi_stream_site, '--cache', pi_stream_cache] }}",
    ]
    for task in render["tasks"]:
        assert task["run_once"] is True and task["delegate_to"] == "localhost"
        assert task["changed_when"] is False and task["check_mode"] is False
    # Build hosts only build packages. Appliances and relays share one play, so they are provisioned side by
    # side; a relay skips the roles only an appliance has.
    assert provision["hosts"] == "all:!pi_stream_builders"
    assert [r["role"] for r in provision["roles"]] == ROLE_ORDER
    relay_roles = [r["role"] for r in provision["roles"] if r.get("when") != 'pi_stream_play_kind == "appliance"']
    assert relay_roles == RELAY_ROLES
    assert provision["any_errors_fatal"] is False
    assert provision["pre_tasks"][0]["ansible.builtin.import_tasks"] == "tasks/host-bundle.yml"
    host_bundle = load(ROOT / "playbooks/tasks/host-bundle.yml")
    include = host_bundle[0]["ansible.builtin.include_vars"]
    assert include["file"] == "{{ pi_stream_bundle }}/_vars/{{ inventory_hostname }}.yml"
    assert host_bundle[1]["ansible.builtin.assert"]["that"] == ["pi_stream_host_kind == pi_stream_play_kind"]
    # The paths' defaults, in every play: playbook group_vars would not reach a collection's playbook imported by another.
    assert all(play["vars_files"] == ["vars/paths.yml"] for play in (keys, render, provision))
    paths = {name: " ".join(value.split()) for name, value in load(ROOT / "playbooks/vars/paths.yml").items()}
    assert paths["pi_stream_site"] == "{{ hostvars[inventory_hostname]['pi_stream_site'] | default(inventory_dir) }}"
    assert "default(pi_stream_site ~ '/.pi-stream/bundle')" in paths["pi_stream_bundle"]
    assert "default(pi_stream_bundle ~ '/' ~ inventory_hostname)" in paths["pi_stream_host_bundle"]


def ansible_env() -> dict[str, str]:
    return {
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_LOCAL_TEMP": "/tmp",
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
    }


def test_playbook_syntax(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    pi1:\n      ansible_host: 192.0.2.1\n")
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), str(ROOT / "playbooks/site.yml")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=ansible_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_ansible_playbook_renders_what_pi_stream_renders(make_site, tmp_path):
    """`ansible-playbook -i SITE/inventory.yml playbooks/site.yml` finds the site and bundle by itself.

    Runs only the `always` tasks (the render, the include_vars and the roles' argument checks)
    on the controller, so the real _vars pass the argument specs; no host is touched.
    """
    site = make_site("two-pis")
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(site / "inventory.yml"), str(ROOT / "playbooks/site.yml"),
         "--tags", "always", "-e", "ansible_connection=local", "-e", "ansible_become=false"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=ansible_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = site / ".pi-stream" / "bundle"
    assert (bundle / "_vars" / "pi2.yml").is_file()
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-m", "pi_stream", "render", str(site), "-o", str(reference)],
                   check=True, capture_output=True, timeout=60)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(bundle) == files(reference)


def test_a_host_whose_inventory_group_disagrees_with_its_bundle_is_stopped_before_anything_changes(make_site, tmp_path):
    """One play provisions appliances and relays; the inventory's group decides which a host is, and the bundle
    must agree. Rendered from the site's own inventory, then played with one that moves pi1 into
    pi_stream_relays and relay2 out of it: both stop at the check; relay1, in its right group, passes it.

    Every host's address is a closed port on loopback: a host that got past the check fails at its first
    connection, so nothing here can touch this machine.
    """
    site = make_site("relay")
    playbook_inventory = tmp_path / "moved" / "inventory.yml"
    playbook_inventory.parent.mkdir()
    closed = {"ansible_host": "127.0.0.1", "ansible_port": 9}
    playbook_inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"relay2": closed},
        "children": {"pi_stream_relays": {"hosts": {"pi1": closed, "relay1": closed}}},
    }}))
    env = {**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "pi_stream_events",
           "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "pi_stream" / "ansible_plugins" / "callback")}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(playbook_inventory), str(ROOT / "playbooks/site.yml"),
         "--tags", "always", "-e", f"pi_stream_site={site}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert result.returncode != 0
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    check = "Check that this play provisions this kind of host"
    outcome = {e["host"]: e for e in events if e.get("task") == check and e["event"] in ("ok", "failed")}
    assert outcome["relay1"]["event"] == "ok"
    assert outcome["pi1"]["event"] == "failed"
    assert "pi1 is rendered as appliance but this play provisions the relay" in outcome["pi1"]["message"]
    assert outcome["relay2"]["event"] == "failed"
    assert "relay2 is rendered as relay but this play provisions the appliance" in outcome["relay2"]["message"]
    for host in ("pi1", "relay2"):
        after = events[events.index(outcome[host]) + 1:]
        assert not [e for e in after if e.get("host") == host], f"{host} went on past the check"
    assert [e for e in events if e["event"] == "unreachable" and e["host"] == "relay1"], "relay1 went on, to its first connection"


# --- Linters ---------------------------------------------------------------------------


def test_yamllint():
    if not (BIN / "yamllint").exists():
        pytest.skip("yamllint is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "roles", "playbooks", ".yamllint", ".ansible-lint"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    """About 15 seconds: the real lint gate for roles/ and playbooks/ (.ansible-lint: profile production)."""
    if not (BIN / "ansible-lint").exists() or shutil.which("git") is None:
        pytest.skip("ansible-lint is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "-q", "roles", "playbooks"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, cwd=ROOT, env={**ansible_env(), "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- bundle_files: the list a role compares is the list it copies ----------------------

GUARDED_COPY = re.compile(r"^'([^']+)' in bundle_files_differ$")


def bundle_files_of(role: str) -> list[dict]:
    """`<role>_bundle_files` from the role's vars; a templated list (wireguard_link's) with every optional file in."""
    from jinja2.nativetypes import NativeEnvironment

    value = load(ROOT / "roles" / role / "vars" / "main.yml")[f"{role}_bundle_files"]
    if isinstance(value, str):
        env = NativeEnvironment()
        env.filters["bool"] = bool
        value = env.from_string(value.strip()).render(**{f"{role}_agent": True})
    return value


def test_a_copy_guarded_by_bundle_files_installs_that_file_with_the_mode_compared():
    """A file copied with a mode other than its role's `<role>_bundle_files` entry would differ on every
    deploy (copied each time, never idempotent); one missing from the list would never be copied."""
    guarded = 0
    for path, task in role_tasks():
        module, args = module_of(task)
        match = GUARDED_COPY.match(str(task.get("when", "")))
        if module != "ansible.builtin.copy" or not match:
            continue
        role = path.parts[path.parts.index("roles") + 1]
        compared = {entry["path"]: entry for entry in bundle_files_of(role)}
        file = match.group(1)
        where = f"{path.relative_to(ROOT)}: {task['name']!r}"
        assert file in compared, f"{where} copies {file}, which {role}_bundle_files does not compare"
        assert args["src"].endswith("/" + file) and args["dest"] == "/" + file, where
        assert args["mode"] == compared[file]["mode"], f"{where}: mode {args['mode']}, compared as {compared[file]['mode']}"
        assert args.get("owner", "root") == compared[file].get("owner", "root"), where
        assert args.get("group", "root") == compared[file].get("group", "root"), where
        guarded += 1
    assert guarded >= 10, "the single-file copies of firewall, nginx_rtmp, dvr_proxy, camera_capture, security_updates and wireguard_link"
