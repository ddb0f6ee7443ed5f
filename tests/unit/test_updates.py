"""verify's and status' judgement of a Pi's update report (pi_stream/updates.py), on reports written by hand."""

from __future__ import annotations

from pi_stream.site import DEFAULT_UPDATE_POLICY, UpdatePolicy
from pi_stream.updates import REBOOT_OVERDUE_SECONDS, judge

NOW = 1_800_000_000.0
HOUR = 3600.0


def report(**changes) -> dict:
    """A Pi with nothing pending, apt's lists read an hour ago, the last run six hours ago, the next in ten."""
    base = {
        "pending": [], "lists_updated": NOW - HOUR, "last_run": NOW - 6 * HOUR, "next_run": NOW + 10 * HOUR,
        "reboot": {"required": False, "since": None, "packages": []}, "restart": [], "nginx_source": None,
    }
    return {**base, **changes}


OPENSSL = {"package": "libssl3", "installed": "3.0.15-1~deb12u1", "available": "3.0.17-1~deb12u2"}


def test_nothing_pending_is_said_with_the_runs():
    verdict = judge(report(), DEFAULT_UPDATE_POLICY, NOW)
    assert verdict.ok and verdict.summary.startswith("none pending; last run ") and "(6 h ago)" in verdict.summary
    assert "(in 10 h)" in verdict.summary and verdict.notes == ()


def test_a_fix_published_since_the_last_run_is_on_its_way():
    """The lists were read after the last run: the next run installs it."""
    verdict = judge(report(pending=[OPENSSL]), DEFAULT_UPDATE_POLICY, NOW)
    assert verdict.ok and verdict.summary.startswith("1 pending (libssl3), installed at the next run")


def test_a_fix_still_pending_after_a_run_that_saw_it_is_a_failure():
    verdict = judge(report(pending=[OPENSSL], lists_updated=NOW - 8 * HOUR), DEFAULT_UPDATE_POLICY, NOW)
    assert not verdict.ok and "stayed pending after unattended-upgrades ran" in verdict.summary and "libssl3" in verdict.summary


def test_a_run_still_installing_is_not_a_failure():
    """Its log is newer than the lists from its first line on: while it runs, that is no verdict yet (found in the lab,
    when apt-daily started a run during a verify)."""
    verdict = judge(report(pending=[OPENSSL], lists_updated=NOW - 8 * HOUR, last_run=NOW - 60, running=True),
                    DEFAULT_UPDATE_POLICY, NOW)
    assert verdict.ok and verdict.summary.startswith("1 pending (libssl3), being installed now")


def test_no_scheduled_run_is_a_failure_unless_the_site_turned_updates_off():
    assert not judge(report(next_run=None), DEFAULT_UPDATE_POLICY, NOW).ok
    off = judge(report(next_run=None, pending=[OPENSSL]), UpdatePolicy(security=False, time="04:00", reboot=True), NOW)
    assert off.ok and off.summary == "off (updates.security: false): 1 pending, nothing installs them"


def test_many_pending_are_named_eight_at_most():
    many = [{**OPENSSL, "package": f"lib{n}"} for n in range(11)]
    assert "lib7 and 3 more" in judge(report(pending=many), DEFAULT_UPDATE_POLICY, NOW).summary


def test_a_reboot_due_is_said_by_the_policy():
    due = {"required": True, "since": NOW - 2 * HOUR, "packages": ["linux-image-6.1.0-27-arm64"]}
    with_reboots = judge(report(reboot=due), DEFAULT_UPDATE_POLICY, NOW)
    assert with_reboots.ok and "reboots after the next run" in with_reboots.notes[0] and "linux-image" in with_reboots.notes[0]
    without = judge(report(reboot=due), UpdatePolicy(security=True, time="04:00", reboot=False), NOW)
    assert "reboot it yourself" in without.notes[0]
    overdue = judge(report(reboot={**due, "since": NOW - REBOOT_OVERDUE_SECONDS - HOUR}), DEFAULT_UPDATE_POLICY, NOW)
    assert "overdue" in overdue.notes[0]


def test_services_on_replaced_code_and_the_source_build_are_noted():
    verdict = judge(report(restart=["nginx.service", "ssh.service"],
                           nginx_source={"version": "1.22.1", "debian_security": "1.22.1-9+deb12u3"}), DEFAULT_UPDATE_POLICY, NOW)
    assert verdict.ok
    assert verdict.notes[0] == "running replaced code until restarted (a reboot does it): nginx.service, ssh.service"
    assert "nginx 1.22.1 is built from source" in verdict.notes[1] and "nginx 1.22.1-9+deb12u3" in verdict.notes[1]
    assert judge(report(nginx_source={"version": "1.26.3", "debian_security": None}), DEFAULT_UPDATE_POLICY, NOW).notes == ()


RASPBIAN_SOURCE = "origin=Raspbian,label=Raspbian,codename=bookworm (raspbian.raspberrypi.com)"


def test_a_policy_matching_none_of_the_sources_is_a_failure_not_nothing_pending():
    """32-bit Raspberry Pi OS under a Debian-only policy: nothing pending, because nothing can be (security review, 10)."""
    unmatched = report(policy=["origin=Debian,codename=${distro_codename}-security,label=Debian-Security"],
                       sources=[RASPBIAN_SOURCE], matched=[])
    verdict = judge(unmatched, DEFAULT_UPDATE_POLICY, NOW)
    assert not verdict.ok
    assert verdict.summary.startswith(f"the security policy matches none of this Pi's apt sources: {RASPBIAN_SOURCE}")
    assert "origin=Debian,codename=${distro_codename}-security" in verdict.summary
    matched = judge(report(sources=[RASPBIAN_SOURCE], matched=[RASPBIAN_SOURCE]), DEFAULT_UPDATE_POLICY, NOW)
    assert matched.ok and matched.summary.startswith("none pending")
    assert judge(report(), DEFAULT_UPDATE_POLICY, NOW).ok, "a report from before the policy was read: judged as before"
