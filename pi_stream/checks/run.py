"""Running the checks of a site: each check once per host, after the checks it needs, whoever asks first.

`pi-stream verify` (pi_stream.verify) walks every host's checks in order; pytest (pi_stream.checks.plugin)
runs them one test each, in any order or selection. Both ask a HostContext for a check's Outcome: the
context runs the checks it needs first (the SSH check before any other, the login before the media
probes), keeps every outcome, and caches what checks share: the SSH connection, the certificate the
host's web server must present, the sessions (one anonymous, one logged in), each camera's capture state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urljoin

from pi_stream.checks.connection import Http, PinnedCertificate, base_url, testinfra_host
from pi_stream.checks.host import relay_in_use
from pi_stream.checks.plan import CheckFailed, NotApplicable, Step, login_check, plan
from pi_stream.render import DEFAULT_PATHS, Bundle, BundleFile, render_site
from pi_stream.site import Host, Site

PASSED, FAILED, NOT_APPLICABLE, BLOCKED = "passed", "failed", "not applicable", "blocked"


@dataclass(frozen=True)
class Outcome:
    state: str  # PASSED, FAILED, NOT_APPLICABLE, or BLOCKED (a check it needs failed: `cause` names the first that did)
    detail: str
    cause: str = ""

    @property
    def ok(self) -> bool:
        return self.state == PASSED

    @property
    def reported(self) -> bool:
        """verify's rule: a check that was run is a row; one not applicable or not tried is not (its cause is a row)."""
        return self.state in (PASSED, FAILED)


class HostContext:
    """One host's checks and what they share; nothing runs until a check's outcome is asked for."""

    def __init__(self, run: SiteRun, host: Host, steps: list[Step]) -> None:
        self.run, self.host, self.site = run, host, run.site
        self.steps = steps
        self.by_name = {step.name: step for step in steps}
        if len(self.by_name) != len(steps):
            raise ValueError(f"{host.name}: two checks share a name")
        self.outcomes: dict[str, Outcome] = {}
        self.capture: dict[str, dict] = {}  # camera -> the supervisor's status, as the capture state check read it
        self._asking: list[str] = []
        self._pin: PinnedCertificate | Exception | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self.host.name

    @cached_property
    def remote(self):
        """testinfra's host: SSH as the inventory says."""
        return testinfra_host(self.site, self.host, self.run.inventory)

    @property
    def files(self) -> dict[str, BundleFile]:
        return self.run.bundle[self.host.name]

    @property
    def url(self) -> str:
        return base_url(self.site, self.host)

    def pin(self) -> PinnedCertificate:
        """The certificate installed on the host (read over SSH once): every HTTPS connection must present it."""
        if self._pin is None:
            try:
                text = self.remote.file(DEFAULT_PATHS["tls_cert"]).content_string
                self._pin = PinnedCertificate.installed(text, self.site)
            # Whatever stops the read, no connection is made without the certificate to check it against.
            except Exception as exc:  # noqa: BLE001
                self._pin = exc
        if isinstance(self._pin, Exception):
            raise CheckFailed(f"not tried: no installed certificate to check the connection against ({self._pin})")
        return self._pin

    def http(self) -> Http:
        return Http(self.pin()) if self.site.web.https else Http()

    @cached_property
    def anonymous(self) -> Http:
        """A session that never logs in: what a stranger's browser sees."""
        return self.http()

    @cached_property
    def session(self) -> Http:
        """The viewer's session: the login check logs it in, the media checks use its cookies."""
        return self.http()

    def outcome(self, name: str) -> Outcome:
        """The check's outcome, run (once) after the checks it needs."""
        if name not in self.outcomes:
            if name in self._asking:
                raise RuntimeError(f"{self.host.name}: check {name!r} needs itself: {' -> '.join([*self._asking, name])}")
            self._asking.append(name)
            try:
                self.outcomes[name] = self._decide(self.by_name[name])
            finally:
                self._asking.pop()
        return self.outcomes[name]

    def _decide(self, step: Step) -> Outcome:
        for need in step.needs:
            before = self.outcome(need)
            if before.state in (FAILED, BLOCKED):  # not tried: the detail is the first failed check's
                return Outcome(BLOCKED, before.detail, before.cause or need)
            if before.state == NOT_APPLICABLE:
                return Outcome(NOT_APPLICABLE, before.detail)
        try:
            ok, detail = step.probe(self)
        except NotApplicable as exc:
            return Outcome(NOT_APPLICABLE, str(exc))
        except CheckFailed as exc:
            return Outcome(FAILED, str(exc))
        # Any error inside a probe is that check failing, never the run crashing.
        except Exception as exc:  # noqa: BLE001
            return Outcome(FAILED, describe(exc))
        return Outcome(PASSED if ok else FAILED, detail)

    def close(self) -> None:
        """Log the viewer out if the login check logged in (the host revokes the session), and close the connections."""
        if self._closed:
            return
        self._closed = True
        login = self.outcomes.get(login_check(self.run.user))
        if "session" in self.__dict__ and login is not None and login.ok:
            # A logout that fails leaves a session that expires by itself.
            with contextlib.suppress(Exception):
                self.session.post(urljoin(self.url, "auth/logout"), json={})
        for name in ("session", "anonymous"):
            if name in self.__dict__:
                self.__dict__[name].close()


def describe(exc: Exception) -> str:
    """An exception as a check's detail. testinfra raises RuntimeError(CommandResult) on exit code 255, which is ssh's
    own failure and some commands' (fail2ban-client's with its server down): the stderr says which."""
    result = exc.args[0] if exc.args else None
    if isinstance(exc, RuntimeError) and hasattr(result, "exit_status") and hasattr(result, "stderr"):
        return f"exit {result.exit_status}: {result.stderr.strip()}"
    return f"{type(exc).__name__}: {exc}"


class SiteRun:
    """One verification of a site as the viewer `user`: a HostContext per host, made when first asked for."""

    def __init__(self, site: Site, user: str, password: str | None, bundle: Bundle | None = None,
                 advance_timeout: float | None = None, inventory: Path | None = None,
                 planner: Callable[[SiteRun, Host], list[Step]] | None = None) -> None:
        self.site, self.user = site, user
        self.password = password  # None: the login check fails, saying how to give one
        self._bundle = bundle  # what the deployed files must equal: rendered from the site when not given
        self.advance_timeout = advance_timeout
        self.inventory = inventory  # connect as this inventory says instead of the site's own
        self.planner = planner  # the checks of a host: pi_stream.checks.plan.plan unless given
        self.contexts: dict[str, HostContext] = {}
        self._relays: dict[str, str] = {}

    @cached_property
    def bundle(self) -> Bundle:
        return self._bundle if self._bundle is not None else render_site(self.site)

    def context(self, name: str) -> HostContext:
        if name not in self.contexts:
            host = self.site.host(name)
            self.contexts[name] = HostContext(self, host, (self.planner or plan)(self, host))
        return self.contexts[name]

    def hosts(self, only: Collection[str] | None = None) -> Iterator[HostContext]:
        """Every host's context, the Pis first then the relays (a relay's checks ask the Pis which relay is in use)."""
        for host in self.site.provisioned_hosts:
            if only is None or host.name in only:
                yield self.context(host.name)

    def relay_of(self, pi: str) -> str:
        """The relay the Pi pushes to now ("" if none answers), asked once per run."""
        if pi not in self._relays:
            self._relays[pi] = relay_in_use(self.context(pi).remote)
        return self._relays[pi]

    def relay_in_use(self, relay: str) -> bool:
        return any(self.relay_of(pi.name) == relay for pi in self.site.hosts)

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()
