"""site.yml `updates:`: Debian's security updates, installed every night by unattended-upgrades, and the reboot they may need.

An appliance runs for years with nobody logged in: it patches itself unless
the site says not to (and deploy then says what that means).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pi_stream.site.fields import Fields

TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True)
class UpdatePolicy:
    security: bool  # unattended-upgrades installs Debian's security updates every day
    time: str  # "HH:MM", the Pi's local time: when they are installed, and the Pi reboots if one needs it
    reboot: bool  # reboot right after an update that needs one (a kernel); False: status says when one is due


DEFAULT_UPDATE_POLICY = UpdatePolicy(security=True, time="04:00", reboot=True)


def parse_updates(section: Fields) -> UpdatePolicy:
    """`updates: {security: true, time: "04:00", reboot: true}`."""
    policy = UpdatePolicy(
        security=section.boolean("security", DEFAULT_UPDATE_POLICY.security),
        time=section.string("time", DEFAULT_UPDATE_POLICY.time, TIME_RE, 'a time of day like "04:00" (24-hour, the Pi\'s local time)'),
        reboot=section.boolean("reboot", DEFAULT_UPDATE_POLICY.reboot),
    )
    section.done()
    return policy


def update_notes(policy: UpdatePolicy) -> list[str]:
    """Said at every deploy when the site turns a safe default off."""
    if not policy.security:
        return [
            "updates.security is false: the Pi installs no security updates by itself; install them yourself "
            "(apt-get upgrade on the Pi), or `pi-stream status` will list more pending every week"
        ]
    if not policy.reboot:
        return [
            "updates.reboot is false: an update that needs a reboot (a kernel) stays inactive until you reboot the Pi; "
            "`pi-stream status` says when one is due"
        ]
    return []
