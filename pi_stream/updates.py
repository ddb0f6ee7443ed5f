"""Security updates on a Pi: what its report says, and what `verify` and `status` make of it.

The Pi's report (templates/usr/local/lib/pi-stream/pi_stream_updates.py,
installed by the security_updates role) states facts: pending security
updates, the apt sources the security policy matches (none: nothing can
install), when apt read the archives and when unattended-upgrades last ran, a
reboot due, services still running replaced code, and, for nginx built from
source, Debian's security version of the same line. The judgement is made
here, once, for both commands.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pi_stream.site import UpdatePolicy

REPORT_SCRIPT = "/usr/local/lib/pi-stream/pi_stream_updates.py"
# Past this, a pending reboot is worth saying even with reboots on: the night's run should have done it.
REBOOT_OVERDUE_SECONDS = 36 * 3600


@dataclass(frozen=True)
class UpdatesVerdict:
    ok: bool  # False: the mechanism is not doing its job (verify fails, status needs attention)
    summary: str  # one line: pending, runs
    notes: tuple[str, ...] = ()  # further lines for status: reboot, services, the source build


def read_report(remote) -> dict:
    """The report, run as root over the testinfra connection; RuntimeError when it cannot be read."""
    result = remote.run("/usr/bin/python3 %s", REPORT_SCRIPT)
    if result.rc != 0:
        raise RuntimeError(f"{REPORT_SCRIPT} failed (exit {result.rc}): {result.stderr.strip()[-300:]}: deploy again")
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{REPORT_SCRIPT} did not print JSON: deploy again") from exc


def when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
    hours = (now - timestamp) / 3600
    if abs(hours) < 48:
        return f"{local} ({'in ' if hours < 0 else ''}{abs(hours):.0f} h{'' if hours < 0 else ' ago'})"
    return local


def judge(report: dict, policy: UpdatePolicy, now: float | None = None) -> UpdatesVerdict:
    now = time.time() if now is None else now
    pending = report["pending"]
    names = ", ".join(p["package"] for p in pending[:8]) + (f" and {len(pending) - 8} more" if len(pending) > 8 else "")
    runs = f"last run {when(report['last_run'], now)}, next {when(report['next_run'], now)}"
    notes = [*reboot_notes(report, policy, now), *restart_notes(report), *source_build_notes(report)]
    if not policy.security:
        summary = f"off (updates.security: false): {len(pending)} pending, nothing installs them" if pending else "off (updates.security: false)"
        return UpdatesVerdict(True, summary, tuple(notes))
    if report["next_run"] is None:
        return UpdatesVerdict(False, "apt-daily-upgrade.timer is not scheduled: nothing will install them (deploy again)", tuple(notes))
    if report.get("sources") and not report.get("matched"):
        # Nothing pending because nothing can be: no archive the policy names is configured (a report from
        # before the policy was read has no "sources": it is judged as before).
        return UpdatesVerdict(
            False,
            f"the security policy matches none of this Pi's apt sources: {'; '.join(report['sources'])} "
            f"(policy: {'; '.join(report.get('policy') or ['none'])}); no security update installs: "
            "see README, \"Security updates\", for the distributions pi-stream covers",
            tuple(notes),
        )
    if not pending:
        return UpdatesVerdict(True, f"none pending; {runs}", tuple(notes))
    if report.get("running"):
        return UpdatesVerdict(True, f"{len(pending)} pending ({names}), being installed now (unattended-upgrades is running); {runs}",
                              tuple(notes))
    last_run, lists = report["last_run"], report["lists_updated"]
    if last_run is not None and lists is not None and last_run > lists:
        return UpdatesVerdict(
            False,
            f"{len(pending)} stayed pending after unattended-upgrades ran at {when(last_run, now)} ({names}): "
            "see /var/log/unattended-upgrades/unattended-upgrades.log on the Pi",
            tuple(notes),
        )
    return UpdatesVerdict(True, f"{len(pending)} pending ({names}), installed at the next run; {runs}", tuple(notes))


def reboot_notes(report: dict, policy: UpdatePolicy, now: float) -> list[str]:
    reboot = report["reboot"]
    if not reboot["required"]:
        return []
    why = f" for {', '.join(reboot['packages'])}" if reboot["packages"] else ""
    due = f"reboot due since {when(reboot['since'], now)}{why}"
    if not policy.reboot:
        return [f"{due}: updates.reboot is false, so reboot it yourself when it suits (sudo reboot)"]
    if reboot["since"] is not None and now - reboot["since"] > REBOOT_OVERDUE_SECONDS:
        return [f"{due}: overdue, the night's run did not reboot it (see the unattended-upgrades log)"]
    return [f"{due}: the Pi reboots after the next run ({when(report['next_run'], now)})"]


def restart_notes(report: dict) -> list[str]:
    services = report.get("restart") or []
    if not services:
        return []
    return [f"running replaced code until restarted (a reboot does it): {', '.join(services)}"]


def source_build_notes(report: dict) -> list[str]:
    source = report.get("nginx_source")
    if not source or not source.get("debian_security"):
        return []
    return [
        f"nginx {source['version']} is built from source and gets no security updates: Debian's security archive has "
        f"nginx {source['debian_security']} for its line, with fixes the build may lack. Bump nginx.source.nginx to a "
        "fixed release (version and sha256), or set nginx.install_method: package."
    ]
