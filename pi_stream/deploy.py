"""Run the playbook against a site's hosts: argv built here, progress from structured events.

`deploy()` renders nothing itself: the playbook's first play calls `pi-stream
render`, exactly as it does for a user running plain `ansible-playbook`.
"""

from __future__ import annotations

import json
import os
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
from pi_stream.errors import DeployError, ExitStatus, UnreachableError
from pi_stream.nginx_source import cache_root
from pi_stream.site import INVENTORY_FILE, Site

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
    site: Site, check: bool = False, limit: str | None = None, sources_checked: bool = False, *, playbook: Path = PLAYBOOK
) -> list[str]:
    """sources_checked: the caller has just fetched and checked the source tarballs, so the playbook need not hash them again.

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


def check_reachable(site: Site, timeout: float = SSH_PROBE_TIMEOUT_SECONDS) -> None:
    """One line per unreachable host, before Ansible prints a wall of text about it."""
    problems = []
    wanted = {site.nginx_source.build_host} if site.nginx_install_method == "source" else set()
    if site.webrtc is not None and site.webrtc.install_method == "source":
        wanted.add(site.webrtc.source.build_host)
    builders = [h for h in site.build_hosts if h.name in wanted]
    for host in (*site.hosts, *builders):
        try:
            with socket.create_connection((host.address, host.ssh_port), timeout=timeout) as conn:
                conn.settimeout(timeout)
                banner = conn.recv(64)
            if not banner.startswith(b"SSH-"):
                problems.append(f"{host.name} ({host.address}:{host.ssh_port}): something answers, but not SSH")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError | socket.timeout):
                reason = f"no answer within {timeout:g}s"
            problems.append(f"{host.name} ({host.address}:{host.ssh_port}): SSH unreachable: {reason}")
    if problems:
        raise UnreachableError(
            "\n".join(problems) + "\nnothing was changed; check the address in inventory.yml and that the Pi is on"
        )


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
    playbook: Path = PLAYBOOK,
) -> DeployResult:
    """Provision every host of the site. Raises UnreachableError before running anything if a host is down.

    playbook: site.yml by default; pi_stream.remove runs remove.yml through the same events and result.
    """
    timeout = deploy_timeout(site) if timeout is None else timeout
    check_reachable(site)
    argv = playbook_argv(site, check=check, sources_checked=sources_checked, playbook=playbook)
    run_dir = new_run_dir(site)
    events_path = run_dir / "events.jsonl"
    stderr_path = run_dir / "ansible-stderr.log"
    result = DeployResult(status=ExitStatus.OK, rc=0, run_dir=run_dir)
    deadline = time.monotonic() + timeout
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stderr_file, open(
        os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w"
    ) as events_file:
        process = proc.stream(argv, stderr=stderr_file, env=playbook_env(site), cwd=str(share.ROOT))
        try:
            assert process.stdout is not None
            for line in process.stdout:
                events_file.write(line)
                event = parse_event(line)
                if event is None:
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
