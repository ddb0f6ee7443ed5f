"""site.yml `nvrs:`: recorders that serve many cameras as channels, each with a limit on RTSP sessions.

A camera names an NVR and a channel instead of a URL (see cameras.py), so an
NVR's address and credentials are written once; the session limit decides which
always-on cameras wait (`Site.waiting_cameras`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pi_stream.site.fields import NAME_HINT, NAME_RE, Fields, text_problem


@dataclass(frozen=True)
class Nvr:
    """A recorder (NVR/DVR) serving many cameras as channels, with a limit on concurrent RTSP sessions."""

    name: str
    address: str
    port: int
    username: str
    password: str = field(repr=False)
    path_template: str  # e.g. "/Streaming/Channels/{channel}01"
    max_sessions: int

    def url(self, channel: int) -> str:
        """The channel's URL without credentials (those reach only the Pi, in a root-only file)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"rtsp://{host}:{self.port}{self.path_template.replace('{channel}', str(channel))}"


def parse_nvrs(section: Fields) -> tuple[Nvr, ...]:
    """`nvrs: {shed: {host, port, username, password, path_template, max_sessions}}`."""
    nvrs = []
    for name in list(section.data):
        entry = section.sub(str(name))
        if not isinstance(name, str) or text_problem(name, NAME_RE):
            entry.error("", f"{name!r} is not a valid NVR name: {NAME_HINT}")
        address = entry.string("host", "", re.compile(r"^[A-Za-z0-9.:-]+$"), "an address or DNS name like 192.0.2.64")
        if not address and "host" not in entry.data:
            entry.error("host", "missing: the NVR's address, e.g. 192.0.2.64")
        template = entry.string("path_template", "/Streaming/Channels/{channel}01")
        if "{channel}" not in template or not template.startswith("/"):
            entry.error("path_template", f"{template!r} must start with '/' and contain {{channel}}, e.g. /Streaming/Channels/{{channel}}01")
        elif re.search(r"[\s?#]|\{(?!channel\})", template):
            entry.error("path_template", f"{template!r} may hold no spaces, '?', '#' or braces other than {{channel}}")
        nvrs.append(
            Nvr(
                name=str(name),
                address=address,
                port=entry.integer("port", 554, 1, 65535),
                username=entry.string("username", ""),
                password=entry.string("password", ""),
                path_template=template,
                max_sessions=entry.integer("max_sessions", 4, 1, 256),
            )
        )
        entry.done()
    return tuple(nvrs)
