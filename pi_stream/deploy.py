"""Run the playbook against a site's hosts: argv built here, progress from structured events.

`deploy()` renders nothing itself: the playbook's first play calls `pi-stream
render`, exactly as it does for a user running plain `ansible-playbook`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pi_stream import ome_source, proc, share
from pi_stream.checks.connection import testinfra_host
from pi_stream.errors import DeployError, ExitStatus, UnreachableError
from pi_stream.nginx_source import cache_root
from pi_stream.site import INVENTORY_FILE, Host, Site
from pi_stream.site.inventory import BUILDERS_GROUP, RELAYS_GROUP

PLAYBOOK = share.PLAYBOOKS / "site.yml"
ROLES_DIR = share.ROLES
CALLBACK_DIR = Path(__file__).resolve().parent / "ansible_plugins" / "callback"
PACKAGE_PARENT = Path(__file__).resolve().parent.parent  # site-packages, or the checkout
DEPLOY_TIMEOUT_SECONDS = 3600  # a cold Pi installs ffmpeg and nginx over a slow link
# The longest each source build may run (the roles' *_build_timeout_seconds
# defaults, which tests/unit/test_deploy.py holds equal): a deploy that builds
# gets these on top, or it would stop a build the role still allows.
NGINX_BUILD_TIMEOUT_SECONDS = 14400
OME_BUILD_TIMEOUT_SECONDS = 36000
SSH_PROBE_TIMEOUT_SECONDS = 5.0
SSH_ARGS = "-o ControlMaster=auto -o ControlPersist=60s"  # also in ansible.cfg, for plain ansible-playbook


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class DeployResult:
    status: ExitStatus
    rc: int
    stats: dict[str, HostStats] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (host, task, message)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (host, message) from debug tasks
    run_dir: Path | None = None

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.stats.values())


def bundle_dir(site: Site) -> Path:
    return (site.directory / ".pi-stream" / "bundle").resolve()


def playbook_argv(
    site: Site,
    check: bool = False,
    limit: str | None = None,
    sources_checked: bool = False,
    *,
    tags: str | None = None,
    verbosity: int = 0,
    ask_become_pass: bool = False,
    playbook: Path = PLAYBOOK,
) -> list[str]:
    """sources_checked: the caller has just fetched and checked the source tarballs, so the playbook need not hash them again.

    limit, tags, verbosity (-v count) and ask_become_pass are ansible-playbook's own options, passed on as they are.
    playbook: site.yml, or another of pi-stream's playbooks (remove.yml) run the same way.
    """
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    argv = [
        str(ansible_playbook if ansible_playbook.exists() else "ansible-playbook"),
        "-i",
        str((site.directory / INVENTORY_FILE).resolve()),
        str(share.require(playbook)),
        "-e",
        f"pi_stream_site={site.directory.resolve()}",
        "-e",
        f"pi_stream_bundle={bundle_dir(site)}",
        "-e",
        f"pi_stream_cache={cache_root()}",
    ]
    if sources_checked:
        argv += ["-e", "pi_stream_sources_checked=true"]
    if check:
        argv.append("--check")
    if limit:
        argv += ["--limit", limit]
    if tags:
        argv += ["--tags", tags]
    if verbosity > 0:
        argv.append("-" + "v" * min(verbosity, 6))
    if ask_become_pass:
        argv.append("--ask-become-pass")
    return argv


def playbook_env(site: Site) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_STDOUT_CALLBACK": "pi_stream_events",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            # Fewer SSH round trips per task: deploys to a Pi are mostly latency.
            "ANSIBLE_PIPELINING": "1",
            # Ansible's default SSH options without -C: every module arrives as a zip already, so
            # compressing the stream again costs the controller's and the Pi's CPU and saves nothing.
            "ANSIBLE_SSH_ARGS": SSH_ARGS,
            "ANSIBLE_FORKS": str(max(5, len(site.hosts))),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The playbook's render play runs `python -m pi_stream`: make sure it finds this package, this version.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH", "")]))
    return env


def deploy_hosts(site: Site, limit: str | None = None) -> tuple[Host, ...]:
    """Every host a deploy talks to: the appliances and relays --limit selects, and the build hosts in use.

    Builds are delegated to their build host whichever hosts are limited to, and a relay reads the
    shared site key from the first relay (viewer_auth_token_key_host), so those come along.
    """
    chosen = limited_hosts(site, limit)
    if any(site.is_relay(h.name) for h in chosen) and site.relays[0] not in chosen:
        chosen = (*chosen, site.relays[0])
    wanted = {site.nginx_source.build_host} if site.nginx_install_method == "source" else set()
    if site.webrtc is not None and site.webrtc.install_method == "source":
        wanted.add(site.webrtc.source.build_host)
    return (*chosen, *(h for h in site.build_hosts if h.name in wanted))


def limited_hosts(site: Site, limit: str | None) -> tuple[Host, ...]:
    """The appliances and relays an Ansible --limit selects, in inventory order: names and globs, the groups
    all, pi_stream_relays and pi_stream_builders, `!` to leave out and `&` to intersect, separated by `,` or `:`.

    A pattern this cannot evaluate (a regex `~...`, `@file`, a group of the user's own) selects every host:
    the probe then asks too much, never too little, and ansible-playbook applies the limit itself.
    """
    every = (*site.hosts, *site.relays)
    if not limit:
        return every
    groups = {"all": every, RELAYS_GROUP: site.relays, BUILDERS_GROUP: ()}
    union: set[str] | None = None
    keep: set[str] = {h.name for h in every}
    for term in filter(None, (t.strip() for t in re.split(r"[,:]", limit))):
        op, pattern = (term[0], term[1:]) if term[0] in "!&" else ("", term)
        if not pattern or pattern[0] in "~@":
            return every
        names = {h.name for h in every if fnmatch.fnmatchcase(h.name, pattern)}
        names |= {h.name for group, members in groups.items() if fnmatch.fnmatchcase(group, pattern) for h in members}
        if not names and not any(fnmatch.fnmatchcase(group, pattern) for group in groups):
            return every
        if op == "!":
            keep -= names
        elif op == "&":
            keep &= names
        else:
            union = names if union is None else union | names
    selected = keep if union is None else union & keep
    return tuple(h for h in every if h.name in selected)


def probe_ssh(host: Host, timeout: float = SSH_PROBE_TIMEOUT_SECONDS) -> str:
    """"" when the host's SSH server answers with its banner; else one line saying what happened."""
    where = f"{host.name} ({host.address}:{host.ssh_port})"
    try:
        with socket.create_connection((host.address, host.ssh_port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            banner = conn.recv(64)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {timeout:g}s"
        return f"{where}: SSH unreachable: {reason}"
    return "" if banner.startswith(b"SSH-") else f"{where}: something answers, but not SSH"


def check_reachable(
    site: Site,
    hosts: tuple[Host, ...] | None = None,
    *,
    timeout: float = SSH_PROBE_TIMEOUT_SECONDS,
    consequence: str = "nothing was changed",
) -> None:
    """One line per unreachable host, before Ansible (or testinfra) prints a wall of text about it.

    hosts: those to probe (default: every host a deploy talks to). deploy, remove, verify and status
    all say it this way, with exit code 6; `consequence` says what was not done.
    """
    problems = [problem for host in (deploy_hosts(site) if hosts is None else hosts) if (problem := probe_ssh(host, timeout))]
    if problems:
        raise unreachable_error(problems, consequence)


def check_logins(site: Site, hosts: tuple[Host, ...] | None = None, consequence: str = "nothing was changed") -> None:
    """check_reachable, then a login to each host as the inventory says (testinfra runs `true` over SSH).

    A wrong key or user is what a new site most often has: said here in one line per host, with its fix, before
    Ansible or testinfra would say it its own way (an UNREACHABLE task, a repr in a failed check)."""
    hosts = deploy_hosts(site) if hosts is None else hosts
    check_reachable(site, hosts, consequence=consequence)
    problems = []
    for host in hosts:
        try:
            testinfra_host(site, host).run("true")
        except RuntimeError as exc:
            said = ssh_failure(exc)
            if not said:
                raise
            problems.append(f"{host.name} ({host.address}:{host.ssh_port}): SSH failed: {said}")
    if problems:
        raise unreachable_error(problems, consequence)


def unreachable_error(problems: list[str], consequence: str) -> UnreachableError:
    """The one error for hosts that SSH does not reach: a line per host, then what was not done and what to check."""
    if all("Permission denied" in problem for problem in problems):
        fix = "check ansible_user in inventory.yml and that your SSH key is on the host (ssh-copy-id USER@HOST)"
    else:
        fix = "check the address in inventory.yml and that the host is on"
    return UnreachableError("\n".join(problems) + f"\n{consequence}; {fix}")


def ssh_failure(exc: BaseException) -> str:
    """What ssh said when it could not run a command for testinfra (which raises RuntimeError(result) on ssh's own
    exit status, 255: connection refused, host key, permission denied); "" for any other error.

    A remote command may exit 255 itself (fail2ban-client does): ask this of commands that never do (`true`,
    `cat`), or probe the host again before calling the host gone (workflows.raise_if_gone)."""
    result = exc.args[0] if isinstance(exc, RuntimeError) and exc.args else None
    if getattr(result, "rc", None) != 255:
        return ""
    lines = [line.strip() for line in str(getattr(result, "stderr", "") or "").splitlines() if line.strip()]
    return lines[-1] if lines else "ssh exited with status 255"


def new_run_dir(site: Site) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = site.directory / ".pi-stream" / "runs" / run_id
    path.mkdir(parents=True, mode=0o700)
    return path


def deploy_timeout(site: Site) -> float:
    """How long the whole ansible-playbook run may take: the install, plus every build the site asks for."""
    timeout = DEPLOY_TIMEOUT_SECONDS
    if site.nginx_install_method == "source":
        timeout += NGINX_BUILD_TIMEOUT_SECONDS
    if ome_source.builds_ome(site):
        timeout += OME_BUILD_TIMEOUT_SECONDS
    return timeout


def deploy(
    site: Site,
    *,
    check: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
    sources_checked: bool = False,
    limit: str | None = None,
    tags: str | None = None,
    verbosity: int = 0,
    ask_become_pass: bool = False,
    on_output: Callable[[str], None] | None = None,
    playbook: Path = PLAYBOOK,
) -> DeployResult:
    """Provision every host of the site (or those `limit` selects).

    Raises UnreachableError before running anything if a host is down or refuses the login (check_logins).

    ask_become_pass: ansible-playbook asks for the sudo password itself, so it gets our terminal as its stdin.
    on_output: each line ansible-playbook prints that is not one of our events (its own -v output).
    playbook: site.yml by default; pi_stream.remove runs remove.yml through the same events and result.
    """
    timeout = deploy_timeout(site) if timeout is None else timeout
    check_logins(site, deploy_hosts(site, limit))
    argv = playbook_argv(
        site, check=check, limit=limit, sources_checked=sources_checked, tags=tags, verbosity=verbosity, ask_become_pass=ask_become_pass,
        playbook=playbook,
    )
    run_dir = new_run_dir(site)
    events_path = run_dir / "events.jsonl"
    stderr_path = run_dir / "ansible-stderr.log"
    result = DeployResult(status=ExitStatus.OK, rc=0, run_dir=run_dir)
    deadline = time.monotonic() + timeout
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stderr_file, open(
        os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w"
    ) as events_file:
        process = proc.stream(argv, stderr=stderr_file, env=playbook_env(site), cwd=str(share.ROOT), terminal=ask_become_pass)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                events_file.write(line)
                event = parse_event(line)
                if event is None:
                    if on_output is not None and line.strip():
                        on_output(line.rstrip("\n"))
                    continue
                absorb(result, event)
                if on_event is not None:
                    on_event(event)
                if time.monotonic() > deadline:
                    process.kill()
                    raise DeployError(f"ansible-playbook ran longer than {timeout:g}s and was stopped")
            result.rc = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            process.kill()
            process.wait()
            raise
    if result.rc != 0 or any(s.failures or s.unreachable for s in result.stats.values()):
        if any(s.unreachable for s in result.stats.values()) and not any(s.failures for s in result.stats.values()):
            result.status = ExitStatus.UNREACHABLE
        else:
            result.status = ExitStatus.DEPLOY_FAILED
        if not result.stats and not result.failures:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-15:]
            result.failures.append(
                ("-", "ansible-playbook", f"exit code {result.rc}: {shlex.join(argv)}\n" + "\n".join(tail))
            )
    return result


def parse_event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def absorb(result: DeployResult, event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "stats":
        for host, summary in event["hosts"].items():
            result.stats[host] = HostStats(
                **{key: int(summary.get(key, 0)) for key in HostStats.__dataclass_fields__}
            )
    elif kind in ("failed", "unreachable", "item_failed") and not event.get("ignored"):
        result.failures.append((event.get("host", "-"), event.get("task", "-"), event.get("message", "")))
    elif kind == "ok" and event.get("action") in ("debug", "ansible.builtin.debug") and event.get("message"):
        result.notes.append((event.get("host", "-"), event["message"]))
