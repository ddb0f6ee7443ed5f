"""Removal covers what provisioning makes: every unit, file, user, nftables table and package of templates/ and roles/.

playbooks/remove.yml keeps its lists in its play vars (what it looks for on a host); these tests derive what the
roles and templates make on a host and fail for anything the lists miss, so a unit, file, table, user or package
added later without its removal fails here. The playbook's behaviour on a real host: tests/lab/installed/test_removal.py.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_stream import remove, render, share
from pi_stream.console import Console
from pi_stream.deploy import DeployResult, HostStats, playbook_argv
from pi_stream.errors import ExitStatus
from pi_stream.site import load_site
from pi_stream.site.storage import DEFAULT_SNAPSHOTS_PATH
from tests.unit.test_roles_static import BIN, ansible_env, argv_of, load, module_of, walk

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "remove.yml"
TASK_FILES = sorted((ROOT / "playbooks" / "tasks").glob("remove-*.yml"))
UNIT_DIR = "/etc/systemd/system"

# Paths the roles write that are not pi-stream's to remove, and why.
NOT_PI_STREAMS = {
    "/etc/wireguard": "wireguard-tools ships it (dpkg -L wireguard-tools); it stays with the package",
}
# Units the roles start that belong to a package: what remove.yml does with each.
PACKAGE_UNITS = {
    "nginx": "purged with nginx (pi_stream_remove_service_packages), or restarted on Debian's configuration",
    "nginx.service": "as nginx",
    "fail2ban": "purged with fail2ban, or restarted without pi-stream's jails",
    "apt-daily.timer": "Debian's; pi-stream only enables it",
    "apt-daily-upgrade.timer": "Debian's; restarted on its own schedule once pi-stream's drop-in is gone",
}
# Packages the roles install that stay after removal, and why (docs/removing.md says the same).
KEPT_PACKAGES = {
    "ffmpeg": "a general tool; other programs use it",
    "fonts-dejavu-core": "a font other programs use",
    "nftables": "the host's firewall tool (Debian's nftables.service); rules of yours may use it",
    "python3": "the system's Python; Ansible needs it",
    "python3-bcrypt": "a library; removing it may break other Python programs",
    "python3-systemd": "a library; removing it may break other Python programs",
    "python3-jwt": "a library; removing it may break other Python programs",
    "python3-cryptography": "a library; removing it may break other Python programs",
    "python3-apt": "apt's own Python library; unattended-upgrades needs it",
    "openssl": "the system's TLS tool",
    "unattended-upgrades": "Debian's security updates go on without pi-stream (its policy file goes)",
    "needrestart": "goes on restarting services after library updates (its pi-stream policy goes)",
    "wireguard-tools": "a general tool; a tunnel of yours may use it",
    "wireguard-go": "a general tool; a tunnel of yours may use it",
    "iproute2": "the system's network tool",
    "podman": "a general container tool (OvenMediaEngine's image goes)",
}
# Build tools on build hosts (the roles' *_build_packages): kept, being general tools (compilers, -dev libraries).
BUILD_PACKAGE_LISTS = ("nginx_rtmp_build_packages", "webrtc_ome_build_packages")


def plays() -> list[dict]:
    return load(PLAYBOOK)


def remove_vars() -> dict:
    return plays()[0]["vars"]


def removal_tasks() -> Iterator[tuple[Path, dict]]:
    for play in plays():
        for section in ("tasks", "handlers"):
            for task in walk(play.get(section)):
                yield PLAYBOOK, task
    for path in TASK_FILES:
        for task in walk(load(path)):
            yield path, task


# --- What the roles and templates make ---------------------------------------------------


def role_defaults() -> dict:
    values: dict = {}
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        values.update(load(path) or {})
    return values


def role_tasks() -> Iterator[tuple[str, dict]]:
    for path in sorted([*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml")]):
        role = path.parts[path.parts.index("roles") + 1]
        for task in walk(load(path)):
            yield role, task


def string_vars() -> dict[str, str]:
    """Variables the roles build paths from: defaults, set_fact values and include_tasks vars that are strings."""
    found = {k: v for k, v in role_defaults().items() if isinstance(v, str)}
    for _, task in role_tasks():
        module, args = module_of(task)
        for source in (args if module.endswith("set_fact") and isinstance(args, dict) else {}, task.get("vars") or {}):
            found.update({k: v for k, v in source.items() if isinstance(v, str)})
    return found


EXPRESSION = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*(\|\s*dirname\s*)?\}\}")


def resolve(text: str, names: dict[str, str], depth: int = 0) -> str:
    """`{{ name }}` and `{{ name | dirname }}` replaced by the variable's value; any other expression by X."""
    def one(match: re.Match) -> str:
        value = names.get(match.group(1))
        if value is None or depth > 5:
            return "X"
        value = resolve(value, names, depth + 1)
        return str(Path(value).parent) if match.group(2) else value
    return re.sub(r"\{\{.*?\}\}", "X", EXPRESSION.sub(one, text), flags=re.DOTALL)


def loop_items(task: dict) -> list:
    loop = task.get("loop")
    return loop if isinstance(loop, list) else []


def role_written_paths() -> set[str]:
    """Every absolute path a role's task writes on a host: copy dest, file path (but not state absent), a
    command's creates or its absolute arguments. Loops over literal lists are expanded; the bundle's copies
    (`/{{ item.path }}`) are the templates' (checked apart); controller-side tasks are left out."""
    names = string_vars()
    paths: set[str] = set()
    for _, task in role_tasks():
        module, args = module_of(task)
        short = module.rsplit(".", 1)[-1]
        if task.get("delegate_to") == "localhost" or not isinstance(args, dict):
            continue
        candidates: list[str] = []
        if short == "copy":
            candidates.append(args["dest"])
        elif short == "file" and args.get("state") != "absent":
            candidates.append(args.get("path") or args.get("dest"))
        elif short == "command":
            # Absolute arguments (an option's value like -subj /CN=... is not a path).
            candidates += [a for a in argv_of(task) if a.startswith("/") and "=" not in a]
            candidates += [args["creates"]] if "creates" in args else []
        for candidate in candidates:
            if "item.path }}" in candidate and candidate.startswith("/{{"):
                continue  # a bundle file: the templates' test covers it
            if "{{ item" in candidate and loop_items(task):
                for item in loop_items(task):
                    value = item["path"] if isinstance(item, dict) else str(item)
                    paths.add(resolve(re.sub(r"\{\{\s*item(\.path)?\s*\}\}", value, candidate), names))
            else:
                paths.add(resolve(candidate, names))
    return {p.rstrip("/") for p in paths if p.startswith("/")}


def template_targets() -> list[str]:
    """Where each template lands on a host (every feature's: the bundle of some site has each)."""
    return ["/" + rel.removesuffix(".j2").replace(render.CAMERA_TOKEN, "cam") for rel in render.template_paths()]


def covered(path: str) -> bool:
    """Whether remove.yml removes `path` (itself, or a directory above it)."""
    rv = remove_vars()
    parts = Path(path).parts
    ancestors = [str(Path(*parts[:i])) for i in range(2, len(parts) + 1)]
    if any(fnmatch.fnmatchcase(a, entry) for a in ancestors for entry in rv["pi_stream_remove_paths"]):
        return True
    if path.startswith(UNIT_DIR + "/"):
        below = Path(path).relative_to(UNIT_DIR).parts
        if any(fnmatch.fnmatchcase(part, p) for part in below for p in rv["pi_stream_remove_unit_patterns"]):
            return True
    return any(a in rv["pi_stream_remove_dirs_if_empty"] for a in ancestors)


def removal_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (PLAYBOOK, *TASK_FILES))


# --- Files ----------------------------------------------------------------------------------


def test_every_template_lands_where_removal_looks():
    special = {"/etc/nginx/nginx.conf"}  # nginx-common's conffile, written over: tasks/remove-packages.yml
    missed = [t for t in template_targets() if t not in special and not covered(t)]
    assert not missed, f"remove.yml does not remove these rendered files (add them to pi_stream_remove_paths): {missed}"
    assert "'Generated by pi-stream'" in (ROOT / "playbooks/tasks/remove-packages.yml").read_text()
    assert "/etc/nginx/nginx.conf" in (ROOT / "playbooks/tasks/remove-packages.yml").read_text()


def test_every_file_a_role_writes_is_removed():
    written = role_written_paths()
    assert {"/etc/pi-stream/encoder.env", "/etc/pi-stream/auth/token.key", "/var/log/pi-stream/auth.log",
            "/etc/wireguard/pistream.key", "/var/cache/pi-stream/dvr/X"} <= written, "the scan no longer reads the roles"
    # Programs a task runs (an interpreter): test_programs_a_role_runs_by_path_exist_outside_pi_stream.
    # The capture's storage directories come from site.yml (a loop over camera_capture_storage_dirs, not
    # listed here): tasks/remove-media.yml, test_snapshots_are_looked_for_where_the_site_model_puts_them.
    read_only = {p for p in written if p.startswith(("/usr/bin/", "/usr/sbin/", "/bin/", "/proc/"))}
    missed = sorted(p for p in written - read_only - set(NOT_PI_STREAMS) if not covered(p))
    assert not missed, f"remove.yml does not remove these files the roles write: {missed}"


def test_programs_a_role_runs_by_path_exist_outside_pi_stream():
    """A command's absolute argument outside the pi-stream paths is a program it runs, not a file it makes."""
    written = role_written_paths()
    assert {p for p in written if p.startswith(("/usr/bin/", "/usr/sbin/"))} <= {"/usr/bin/python3"}


def test_snapshots_are_looked_for_where_the_site_model_puts_them():
    rv = remove_vars()
    assert rv["pi_stream_remove_default_snapshots"] == DEFAULT_SNAPSHOTS_PATH
    assert str(Path(DEFAULT_SNAPSHOTS_PATH).parent) in rv["pi_stream_remove_dirs_if_empty"]
    media = (ROOT / "playbooks/tasks/remove-media.yml").read_text()
    assert "/etc/pi-stream/capture.json" in media and "snapshots_path" in media and "recordings_path" in media


def test_the_globs_match_nothing_of_the_lab_or_the_system():
    """The globs are pi-stream's names only: the lab's own files on a Pi, Debian's, a user's are left alone."""
    rv = remove_vars()
    others = ["/etc/apt/apt.conf.d/90pi-stream-lab", "/etc/apt/apt.conf.d/50unattended-upgrades", "/etc/nginx/sites-enabled",
              "/etc/fail2ban/jail.d/defaults-debian.conf", "/etc/wireguard/wg0.conf", "/var/cache/apt", "/run/sshd",
              "/etc/systemd/system/ssh.service.d", "/etc/systemd/logind.conf.d/50-pi-stream-lab.conf", "/etc/ssh/sshd_config"]
    for path in others:
        assert not any(fnmatch.fnmatchcase(path, entry) for entry in rv["pi_stream_remove_paths"]), path
        assert not covered(path), path


# --- Units ----------------------------------------------------------------------------------


def role_units() -> set[str]:
    """Units the templates define and the roles start, stop or restart."""
    units = {Path(t).name for t in template_targets() if t.startswith(UNIT_DIR + "/") and t.count("/") == 4}
    for _, task in role_tasks():
        module, args = module_of(task)
        if module.rsplit(".", 1)[-1] != "systemd_service" or not isinstance(args, dict) or "name" not in args:
            continue
        names = [str(i) for i in loop_items(task)] if args["name"] == "{{ item }}" else [args["name"]]
        units |= {n for n in names if "{{" not in n}
    return units


def test_every_unit_is_stopped_disabled_and_removed():
    patterns = remove_vars()["pi_stream_remove_unit_patterns"]
    units = role_units()
    assert {"pi-stream-capture.service", "pi-stream-auth.socket", "pi-stream-retention.timer", "wg-quick@pistream.service",
            "pi-stream-firewall.service", "pi-stream-ome.service", "pi-stream-relay.service"} <= units
    missed = sorted(u for u in units - set(PACKAGE_UNITS) if not any(fnmatch.fnmatchcase(u, p) for p in patterns))
    assert not missed, f"add these units to pi_stream_remove_unit_patterns: {missed}"
    service_packages = remove_vars()["pi_stream_remove_service_packages"]
    assert {"nginx", "fail2ban"} <= set(service_packages)
    assert "apt-daily-upgrade.timer" in removal_text()


def test_a_legacy_per_camera_unit_is_covered_too():
    """Earlier versions ran pi-stream-camera@NAME.service: their files, drop-ins and instances match."""
    patterns = remove_vars()["pi_stream_remove_unit_patterns"]
    for name in ("pi-stream-camera@.service", "pi-stream-camera@door.service", "pi-stream-camera@door.service.d"):
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns)


# --- Users, tables, interfaces ---------------------------------------------------------------


def test_every_system_user_is_removed():
    names = string_vars()
    users = {resolve(args["name"], names) for _, task in role_tasks()
             for module, args in [module_of(task)] if module == "ansible.builtin.user"}
    for path in render.template_paths():
        text = (share.TEMPLATES / path).read_text(encoding="utf-8", errors="replace")
        if "DynamicUser=yes" not in text:
            users |= {u.replace("{{ capture_user }}", render.CAPTURE_USER) for u in re.findall(r"^User=(.+)$", text, re.MULTILINE)}
    assert users == {render.CAPTURE_USER} == set(remove_vars()["pi_stream_remove_users"])


def test_every_nftables_table_is_deleted():
    tables = set()
    for path in render.template_paths():
        text = (share.TEMPLATES / path).read_text(encoding="utf-8", errors="replace")
        tables |= set(re.findall(r"^\s*table\s+(?:ip|ip6|inet|arp|bridge|netdev)\s+(\w+)", text, re.MULTILINE))
    assert {"pi_stream", "pi_stream_ome"} <= tables
    pattern = remove_vars()["pi_stream_remove_nft_tables"]
    assert all(re.fullmatch(pattern, t) for t in tables), (pattern, tables)
    assert not re.fullmatch(pattern, "filter") and not re.fullmatch(pattern, "f2b-table")
    # fail2ban's table is only deleted when fail2ban goes (tasks/remove-network.yml).
    assert remove_vars()["pi_stream_remove_fail2ban_table"] == "f2b-table"


def test_every_wireguard_interface_is_deleted():
    interfaces = set()
    for _, task in role_tasks():
        argv = argv_of(task)
        if argv[:3] == ["ip", "link", "add"]:
            interfaces.add(argv[argv.index("dev") + 1])
    for path in render.template_paths():
        if path.startswith("etc/wireguard/"):
            interfaces.add(Path(path).name.split(".")[0])
    assert interfaces == {"pistream", "pistream-probe"}
    assert all(fnmatch.fnmatchcase(i, remove_vars()["pi_stream_remove_interfaces"]) for i in interfaces)


# --- Packages -------------------------------------------------------------------------------


def role_packages() -> set[str]:
    """Every package a role installs (state present, or a .deb named after its package)."""
    defaults = role_defaults()
    names = string_vars()
    packages: set[str] = set()
    for _, task in role_tasks():
        module, args = module_of(task)
        if module != "ansible.builtin.apt" or not isinstance(args, dict) or args.get("state") == "absent":
            continue
        if "deb" in args:
            packages.add(Path(resolve(args["deb"], names)).name.split("_")[0])
            continue
        name = args.get("name")
        if name is None:
            continue
        if isinstance(name, str) and (match := re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", name)):
            if match.group(1) in BUILD_PACKAGE_LISTS:
                continue
            name = defaults[match.group(1)]
        packages |= set([name] if isinstance(name, str) else name)
    return packages


def test_every_package_is_removed_or_kept_on_purpose():
    rv = remove_vars()
    removed = set(rv["pi_stream_remove_own_packages"]) | set(rv["pi_stream_remove_service_packages"])
    installed = role_packages()
    assert {"pi-stream-nginx", "pi-stream-ome", "nginx", "fail2ban", "ffmpeg"} <= installed
    undecided = sorted(installed - removed - set(KEPT_PACKAGES))
    assert not undecided, f"decide for each: remove (remove.yml) or keep (KEPT_PACKAGES and docs/removing.md): {undecided}"
    assert not removed & set(KEPT_PACKAGES)
    # Every nginx the source method swaps out is one remove.yml purges.
    assert set(role_defaults()["nginx_rtmp_distribution_packages"]) <= set(rv["pi_stream_remove_service_packages"])
    docs = (ROOT / "docs" / "removing.md").read_text(encoding="utf-8")
    missing = [p for p in [*removed, *KEPT_PACKAGES] if f"`{p}`" not in docs]
    assert not missing, f"docs/removing.md does not name: {missing}"


# --- The playbook itself ------------------------------------------------------------------------


def test_removal_follows_the_house_rules_for_tasks():
    """FQCN, sentences for names, no shell, quoted modes, read-only probes that run under --check (as roles/)."""
    count = 0
    for path, task in removal_tasks():
        count += 1
        module, args = module_of(task)
        where = f"{path.relative_to(ROOT)}: {task.get('name')!r}"
        assert task.get("name", "")[:1].isupper(), where
        if module != "block":
            assert module.count(".") >= 2, where
        assert module.rsplit(".", 1)[-1] not in ("shell", "raw", "script"), where
        if isinstance(args, dict) and "mode" in args:
            assert isinstance(args["mode"], str), where
        if argv_of(task) and task.get("changed_when") is False:
            assert task.get("check_mode") is False, where
        # Nothing is ignored: a failure is reported; only a test whose result a later task reads may pass on.
        assert "ignore_errors" not in task, where
        if task.get("failed_when") is False:
            assert task.get("register"), where
    assert count > 30
    assert "|| true" not in removal_text()


def test_removal_never_touches_ssh():
    """No task names sshd, its unit, its configuration or its port; no table but pi-stream's is deleted."""
    for path, task in removal_tasks():
        module, args = module_of(task)
        if module == "ansible.builtin.debug":
            continue
        acted_on = f"{args} {task.get('loop', '')} {task.get('when', '')}"
        assert not re.search(r"ssh|\b22\b", acted_on), f"{path.relative_to(ROOT)}: {task['name']!r}"
    assert "flush ruleset" not in removal_text()


def test_the_builders_play_only_cleans_the_build_directory():
    main, builders = plays()
    assert main["hosts"] == "all:!pi_stream_builders" and builders["hosts"] == "pi_stream_builders"
    assert main["become"] is True and main["gather_facts"] is False
    modules = [module_of(t)[0] for t in walk(builders["tasks"])]
    assert modules == ["ansible.builtin.find", "ansible.builtin.file"]


def test_remove_playbook_syntax(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    pi1:\n      ansible_host: 192.0.2.1\n")
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), str(PLAYBOOK)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=ansible_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- pi_stream.remove ---------------------------------------------------------------------------


def test_the_playbook_is_found_as_pi_stream_ships_it():
    assert remove.PLAYBOOK == share.PLAYBOOKS / "remove.yml" and remove.PLAYBOOK.is_file()


def test_removal_runs_the_remove_playbook_through_deploy(make_site, monkeypatch, capsys):
    site = load_site(make_site("two-pis"))
    argv = playbook_argv(site, playbook=remove.PLAYBOOK)
    assert str(remove.PLAYBOOK) in argv and not any(a.endswith("site.yml") for a in argv)
    calls = []

    def fake_deploy(site_arg, **kwargs):
        calls.append(kwargs)
        kwargs["on_event"]({"event": "task_start", "task": "Stop and disable each of pi-stream's units"})
        return DeployResult(status=ExitStatus.OK, rc=0, stats={"pi2": HostStats(ok=40, changed=12)})

    monkeypatch.setattr(remove, "deploy", fake_deploy)
    result = remove.run_remove(site, Console(), limit="pi2")
    assert result.status == ExitStatus.OK
    (kwargs,) = calls
    assert kwargs["playbook"] == remove.PLAYBOOK and kwargs["limit"] == "pi2"
    assert kwargs["timeout"] == remove.REMOVE_TIMEOUT_SECONDS
    out, err = capsys.readouterr()
    assert "removing pi-stream from pi2 (192.0.2.11)" in err and "Stop and disable each of pi-stream's units" in err
    assert "pi1" not in err
    assert re.search(r"pi2\s+40\s+12\s+0\s+0", out) and "is kept" in out


def test_a_failed_removal_says_what_failed_and_that_a_rerun_continues(make_site, monkeypatch, capsys):
    site = load_site(make_site())

    def fake_deploy(site_arg, **kwargs):
        return DeployResult(status=ExitStatus.DEPLOY_FAILED, rc=2, stats={"pi1": HostStats(ok=3, failures=1)},
                            failures=[("pi1", "Purge the packages", "dpkg was interrupted")], run_dir=Path("/tmp/run"))

    monkeypatch.setattr(remove, "deploy", fake_deploy)
    assert remove.run_remove(site, Console()).status == ExitStatus.DEPLOY_FAILED
    err = capsys.readouterr().err
    assert "error: pi1: Purge the packages: dpkg was interrupted" in err and "run it again" in err


@pytest.mark.parametrize("name", ["relay", "webrtc", "nvr", "dvr"])
def test_every_file_of_an_example_bundle_is_removed(make_site, name):
    """The rendered bundles of the example sites (every feature), host by host."""
    site = load_site(make_site(name))
    for host, files in render.render_site(site).items():
        missed = [f"/{t}" for t in files if f"/{t}" != "/etc/nginx/nginx.conf" and not covered(f"/{t}")]
        assert not missed, (host, missed)
