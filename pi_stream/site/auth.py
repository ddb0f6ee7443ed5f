"""site.yml `auth:`: how long a viewer's login and a player link last.

The file says hours and days; the model holds seconds, which is what the auth
service and its cookies use.
"""

from __future__ import annotations

from dataclasses import dataclass

from pi_stream.site.fields import Fields


@dataclass(frozen=True)
class Auth:
    session_seconds: int  # a browser login lasts this long; its media cookies too
    link_seconds: int  # lifetime of a player link (VLC, ffplay) made on the page


def parse_auth(section: Fields) -> Auth:
    """`auth: {session_hours: 12, link_days: 30}`."""
    auth = Auth(
        session_seconds=section.integer("session_hours", 12, 1, 24 * 30) * 3600,
        link_seconds=section.integer("link_days", 30, 1, 365) * 86400,
    )
    section.done()
    return auth
