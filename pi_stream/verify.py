"""Prove the appliance works, as a viewer and an administrator would see it: `pi-stream verify`.

The checks are pi_stream.checks (plan.py lists them, run.py runs them): host checks over SSH through
testinfra, media checks as real HTTP requests, a playlist parsed with m3u8 and a segment read in pure
Python. The same checks are a pytest suite users run themselves (`pytest --pyargs pi_stream.checks`);
here they run host by host, in order, and become a VerifyResult.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from pi_stream.checks.connection import Http, PinnedCertificate, media_cookie, ssl_context_of, testinfra_host
from pi_stream.checks.host import security_updates
from pi_stream.checks.run import SiteRun
from pi_stream.errors import ExitStatus
from pi_stream.render import Bundle
from pi_stream.site import Site

# What other modules and tests import from here.
__all__ = [
    "Check", "Http", "PinnedCertificate", "VerifyResult", "media_cookie", "security_updates", "ssl_context_of", "testinfra_host",
    "verify_site",
]


@dataclass(frozen=True)
class Check:
    host: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def status(self) -> ExitStatus:
        return ExitStatus.OK if self.ok else ExitStatus.VERIFY_FAILED

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def verify_site(
    site: Site,
    bundle: Bundle,
    user: str,
    password: str,
    on_check: Callable[[Check], None] | None = None,
    advance_timeout: float | None = None,
    hosts: Collection[str] | None = None,
) -> VerifyResult:
    """Every check of every host (or of `hosts`, by inventory name), the Pis first, then the relays.

    A check that was run is a row. One that does not apply now (a camera waiting for an NVR session, a
    relay on standby) is none; nor is one whose prerequisite failed (its cause is the failed row).
    """
    result = VerifyResult()
    run = SiteRun(site, user, password, bundle=bundle, advance_timeout=advance_timeout)
    try:
        for context in run.hosts(hosts):
            for step in context.steps:
                outcome = context.outcome(step.name)
                if outcome.reported:
                    check = Check(context.name, step.name, outcome.ok, outcome.detail)
                    result.checks.append(check)
                    if on_check:
                        on_check(check)
            context.close()  # logs out now: the viewer's session ends with its host's checks
    finally:
        run.close()
    return result
