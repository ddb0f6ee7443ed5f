"""What each command does, as functions the tests call directly: deploy with progress, verify with a table, the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pi_stream import credentials, ome_source
from pi_stream import status as host_status
from pi_stream.checks.connection import base_url
from pi_stream.console import Console, table
from pi_stream.deploy import DeployResult, check_logins, deploy, limited_hosts
from pi_stream.errors import ExitStatus, PiStreamError, SiteError, UnreachableError, VerifyError
from pi_stream.nginx_source import fetch_archives, fetch_sources
from pi_stream.render import render_site
from pi_stream.site import SITE_FILE, Host, Site, load_site, update_notes
from pi_stream.verify import Check, VerifyResult, verify_site

DEMO_LAB = "demo"
DEMO_VIEWER = "viewer"
DEMO_PASSWORD_FILE = ".pi-stream/demo-password"


class DeployProgress:
    """Turns playbook events into one line per task and per host failure; verbose: a line per host result too."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.task_count = 0
        self.minutes_reported: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "play_start":
            self.console.progress(f"== {event['play']}")
        elif kind == "task_start":
            self.task_count += 1
            prefix = "handler" if event.get("handler") else f"[{self.task_count:3d}]"
            self.console.progress(f"{prefix} {event['task']}")
        elif kind == "async_poll":
            minutes, key = int(event["elapsed"] // 60), f"{event['host']} {event['task']}"
            if minutes > self.minutes_reported.get(key, 0):
                self.minutes_reported[key] = minutes
                self.console.progress(f"      still running on {event['host']}: {minutes} min")
        elif kind == "ok" and event.get("changed"):
            self.console.progress(f"      changed: {event['host']}{self.detail(event)}")
        elif kind in ("failed", "unreachable") and not event.get("ignored"):
            message = (event.get("message") or kind).strip()
            shown = message if self.verbose else message.splitlines()[0][:300]
            self.console.progress(f"      {kind.upper()}: {event['host']}: {shown}")
        elif self.verbose and kind in ("ok", "skipped", "failed"):
            label = {"ok": "ok", "skipped": "skipped", "failed": "failed (ignored)"}[kind]
            self.console.progress(f"      {label}: {event['host']}{self.detail(event)}")

    def detail(self, event: dict[str, Any]) -> str:
        """Verbose: the result's message (a debug task's text, a command's stderr), else nothing."""
        message = (event.get("message") or "").strip() if self.verbose else ""
        return f": {message}" if message else ""


def run_fetch_sources(site: Site, console: Console, cache: Path | None = None) -> list[Path]:
    """The source methods' tarballs in the controller's cache, checked; nothing when nothing is built from source."""
    site_file = str(site.directory / SITE_FILE)
    paths: list[Path] = []
    problems: list = []
    if site.nginx_install_method == "source":
        source = site.nginx_source
        console.progress(
            f"nginx {source.nginx.version} with nginx-rtmp-module {source.rtmp_module.version} from source: checking the tarballs"
        )
        try:
            paths += fetch_sources(source, site_file, cache, console.progress)
        except SiteError as exc:
            problems += exc.problems
    if ome_source.builds_ome(site):
        ome = site.webrtc.source
        console.progress(f"OvenMediaEngine {ome.ome.version} with spdlog {ome.spdlog.version} from source: checking the tarballs")
        try:
            paths += fetch_archives(ome_source.archives(ome), site_file, cache, console.progress)
        except SiteError as exc:
            problems += exc.problems
    if problems:
        raise SiteError(problems)
    return paths


def run_deploy(
    site: Site,
    console: Console,
    check: bool = False,
    *,
    limit: str | None = None,
    tags: str | None = None,
    verbosity: int = 0,
    ask_become_pass: bool = False,
) -> DeployResult:
    """Deploy with progress and a summary table; the URLs to open once it worked.

    limit, tags, verbosity (-v count) and ask_become_pass go to ansible-playbook as they are. With -v the
    progress shows every host's result and ansible's own output besides (its -v, -vv, ... lines).
    """
    chosen = limited_hosts(site, limit)
    hosts = ", ".join(f"{h.name} ({h.address})" for h in chosen)
    console.progress(f"deploying {site.name} to {hosts}{' in check mode' if check else ''}")
    for line in [*budget_notes(site), *update_notes(site.updates)]:
        console.info(f"note: {line}")
    # Before Ansible starts: a wrong checksum is a mistake in site.yml (exit 3) and changes nothing anywhere.
    # Checked here, once: the playbook's own check (for plain ansible-playbook users) is then skipped.
    checked = bool(run_fetch_sources(site, console))
    result = deploy(
        site, check=check, on_event=DeployProgress(console, verbose=verbosity > 0), sources_checked=checked,
        limit=limit, tags=tags, verbosity=verbosity, ask_become_pass=ask_become_pass,
        on_output=console.progress if verbosity > 0 else None,
    )
    if report_run(result, console, failed=f"deploy failed; the run's events are in {result.run_dir}") and not check:
        print_urls(site, console, chosen)
    return result


def report_run(result: DeployResult, console: Console, failed: str) -> bool:
    """A playbook run's per-host stats, its notes, and each failure with the `failed` line after them; True if it passed."""
    rows = [
        (host, str(s.ok), str(s.changed), str(s.failures), str(s.unreachable))
        for host, s in sorted(result.stats.items())
    ]
    if rows:
        console.info(table(rows, ("host", "ok", "changed", "failed", "unreachable")))
    for host, note in result.notes:
        console.info(f"note: {host}: {note}")
    if result.status == ExitStatus.OK:
        return True
    for host, task, message in result.failures:
        console.error(f"{host}: {task}: {message.strip()}")
    console.error(failed)
    return False


def urls_to_open(site: Site, hosts: tuple[Host, ...] | None = None) -> list[tuple[str, str]]:
    """(host, URL) a browser opens: each appliance's page at its inventory address, then each relay's origin
    (what viewers away from home open, site.yml relay.relays[].url). `hosts` narrows it (deploy --limit)."""
    hosts = (*site.hosts, *site.relays) if hosts is None else hosts
    urls = [(h.name, base_url(site, h)) for h in hosts if not site.is_relay(h.name)]
    names = {h.name for h in hosts}
    return urls + [(r.host, r.url.rstrip("/") + "/") for r in site.remote.relays if r.host in names]


def print_urls(site: Site, console: Console, hosts: tuple[Host, ...] | None = None) -> None:
    urls = urls_to_open(site, hosts)
    if not urls:
        return
    width = max(len(url) for _, url in urls)
    console.info("open in a browser:")
    for host, url in urls:
        where = "viewers away from home" if site.is_relay(host) else "on the Pi's network"
        console.info(f"  {url.ljust(width)}  ({host}, {where})")
    if site.login.oidc is not None:
        # The provider sends browsers back only to addresses registered for the client: a missing one is the
        # provider's error page ("redirect_uri mismatch"), not ours, so say which ones at the moment they are needed.
        console.info(f"OpenID Connect: register these redirect URIs for client {site.login.oidc.client_id} at {site.login.oidc.issuer}:")
        for _, url in urls:
            console.info(f"  {url}auth/oidc/callback")


def budget_notes(site: Site) -> list[str]:
    """Said before deploying, not discovered later: which cameras an NVR's session budget leaves waiting."""
    notes = []
    for host in site.hosts:
        for nvr_name, cameras in site.waiting_cameras(host.name).items():
            nvr = site.nvr(nvr_name)
            always_on = sum(1 for c in site.cameras_on(host.name) if c.source.nvr == nvr_name and not c.on_demand)
            notes.append(
                f"NVR {nvr_name} allows {nvr.max_sessions} sessions (nvrs.{nvr_name}.max_sessions) and {always_on} cameras "
                f"are always on: {', '.join(c.name for c in cameras)} (lowest priority) wait for a free session. "
                "Raise max_sessions if the NVR allows more, or make some cameras on_demand."
            )
    return notes


def print_check(console: Console):
    def show(check: Check) -> None:
        mark = "ok  " if check.ok else "FAIL"
        console.progress(f"  {mark} {check.host}: {check.name}  {check.detail}")

    return show


def check_password_login(site: Site, user: str) -> None:
    """verify logs in as a browser does with a password: a viewer who has one, on a site that takes them.
    Said before any password is asked for. With password login off, verify logs in as nobody (user "")."""
    if not site.login.password:
        if user:
            raise PiStreamError(f"verify cannot log in as {user!r}: this site has password login off (site.yml login.password: "
                                "false); leave --user out to check everything but the cameras, or sign in on the page")
        return
    if user not in site.viewers:
        raise PiStreamError(f"{user!r} is not a viewer of this site (viewers: {', '.join(site.viewers)})")
    if user not in site.password_viewers:
        others = ", ".join(site.password_viewers) or "none"
        raise PiStreamError(f"{user!r} logs in by identity only, and verify logs in with a password: pass --user with a viewer "
                            f"of viewers.htpasswd ({others}), or add one with `pi-stream user add SITE NAME`")


def run_verify(site: Site, user: str, password: str, console: Console) -> VerifyResult:
    """Verify every appliance and relay; the URLs to open once it passed.

    A host SSH does not reach is the one-line UnreachableError (exit 6) that deploy gives, before any check,
    and also when a host goes away while verify runs (then the failed checks above were that).
    """
    check_password_login(site, user)
    hosts = (*site.hosts, *site.relays)
    check_logins(site, hosts, "nothing was verified")
    if user:
        console.progress(f"verifying {site.name} as viewer {user}")
    else:
        console.progress(f"verifying {site.name} without logging in: password login is off (login.password: false), so the "
                         "cameras are not checked; sign in on the page to see them")
    bundle = render_site(site)
    try:
        result = verify_site(site, bundle, user, password, on_check=print_check(console))
    except PiStreamError:
        raise
    except Exception as exc:
        raise_if_gone(site, hosts, exc, "verify could not finish")
        raise
    rows = [(c.host, c.name, "ok" if c.ok else "FAIL", c.detail) for c in result.checks]
    console.info(table(rows, ("host", "check", "result", "detail")))
    if not result.ok:
        raise_if_gone(site, hosts, None, f"{len(result.failed)} of {len(result.checks)} checks failed, while a host went away")
        console.error(f"{len(result.failed)} of {len(result.checks)} checks failed")
    else:
        print_urls(site, console)
    return result


def raise_if_gone(site: Site, hosts: tuple[Host, ...], exc: BaseException | None, consequence: str) -> None:
    """Raise the one-line UnreachableError when talking to the hosts failed because one no longer answers SSH.

    Whatever the failure looked like where it surfaced (ssh's exit 255 through testinfra, a requests
    ConnectionError, a timeout), the hosts are probed and logged into again, as before the start: a host
    that answers and lets us in means the failure was the appliance's, and it stands as it was."""
    try:
        check_logins(site, hosts, consequence)
    except UnreachableError as gone:
        raise gone from exc


def run_status(site: Site, console: Console, as_json: bool = False) -> ExitStatus:
    """Print each host's capture status. Exit 5 when a camera is failing or disabled, or a host cannot say."""
    check_logins(site, site.hosts, "no status was read")
    try:
        statuses = [host_status.read_host_status(site, host.name) for host in site.hosts]
    except PiStreamError:
        raise
    except Exception as exc:
        raise_if_gone(site, site.hosts, exc, "status could not finish")
        raise
    if as_json:
        console.info(json.dumps({s.host: status_document(s) for s in statuses}, indent=1))
    else:
        console.info("\n\n".join(host_status.format_host(s) for s in statuses))
    troubled = [f"{s.host}: {c['camera']} ({c['state']})" for s in statuses for c in s.troubled]
    troubled += [f"{s.host}: security updates" for s in statuses if s.updates is not None and not s.updates.ok]
    troubled += [f"{s.host}: relays" for s in statuses if s.relay is not None and not host_status.relay_ok(s.relay)]
    unknown = [s.host for s in statuses if s.error]
    if troubled or unknown:
        console.error("needs attention: " + ", ".join(troubled + [f"{h}: no status" for h in unknown]))
        return ExitStatus.VERIFY_FAILED
    return ExitStatus.OK


def status_document(status) -> dict:
    """A host's status for --json: the supervisor's document (or its error) and the security updates' verdict."""
    document = dict(status.document or {"error": status.error})
    if status.updates is not None:
        document["security_updates"] = {"ok": status.updates.ok, "summary": status.updates.summary, "notes": list(status.updates.notes)}
    elif status.updates_error:
        document["security_updates"] = {"error": status.updates_error}
    if status.relay is not None:
        document["relay"] = status.relay
    return document


def demo_password(site_dir: Path) -> str:
    """The demo viewer's password: made once, kept 0600 in the demo site so a re-run prints the same one."""
    path = site_dir / DEMO_PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = credentials.generate_password()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials.write_private_file(path, password + "\n")
    return password


def prepare_demo_site(site_dir: Path, lab_state) -> str:
    from pi_stream.scaffold import init_site

    site_dir = Path(site_dir)
    if not (site_dir / "site.yml").exists():
        init_site(site_dir, address=lab_state.hosts[0].address)
    # The lab's addresses and keys can change between `lab up`s: always rewrite the inventory.
    lab_state.write_inventory(site_dir / "inventory.yml")
    password = demo_password(site_dir)
    viewers_file = credentials.viewers_path(site_dir)
    current = credentials.read_htpasswd(viewers_file).get(DEMO_VIEWER) if viewers_file.exists() else None
    if current is None or not credentials.verify_password(password, current):
        credentials.add_user(site_dir, DEMO_VIEWER, password)
    return password


def run_demo(site_dir: Path, console: Console, suite: str = "bookworm", arch: str = "amd64") -> int:
    from pi_stream import lab

    console.progress(f"starting lab {DEMO_LAB!r} (a simulated Pi: Debian {suite} {arch} in systemd-nspawn)")
    state = lab.up(DEMO_LAB, hosts=1, suite=suite, arch=arch, progress=console.progress)
    password = prepare_demo_site(site_dir, state)
    site = load_site(site_dir)
    result = run_deploy(site, console)
    if result.status != ExitStatus.OK:
        return int(result.status)
    verified = run_verify(site, DEMO_VIEWER, password, console)
    if not verified.ok:
        raise VerifyError("the demo appliance did not pass verification; see the failed checks above")
    [(_, url)] = urls_to_open(site)
    console.info("")
    console.info(f"The appliance is up. Open {url} in a browser on this machine.")
    console.info(f"  user:     {DEMO_VIEWER}")
    console.info(f"  password: {password}   (kept in {site_dir / DEMO_PASSWORD_FILE}, mode 0600)")
    console.info("  The certificate is self-signed: accept the browser's warning once.")
    console.info(f"Site: {site_dir}/  ·  shell on the Pi: pi-stream lab ssh --name {DEMO_LAB}  ·  stop: pi-stream lab down --name {DEMO_LAB}")
    return int(ExitStatus.OK)
