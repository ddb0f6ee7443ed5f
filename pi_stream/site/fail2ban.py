"""site.yml `fail2ban:`: how many failed logins in what time ban an address, and for how long."""

from __future__ import annotations

from dataclasses import dataclass

from pi_stream.site.fields import Fields


@dataclass(frozen=True)
class Fail2ban:
    maxretry: int
    findtime_seconds: int
    bantime_seconds: int


def parse_fail2ban(section: Fields) -> Fail2ban:
    """`fail2ban: {maxretry: 5, findtime_seconds: 600, bantime_seconds: 3600}`."""
    fail2ban = Fail2ban(
        maxretry=section.integer("maxretry", 5, 1, 100),
        findtime_seconds=section.integer("findtime_seconds", 600, 10, 86400),
        bantime_seconds=section.integer("bantime_seconds", 3600, 10, 31536000),
    )
    section.done()
    return fail2ban
