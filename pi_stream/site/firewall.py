"""site.yml `firewall:`: TCP ports the host firewall opens beyond SSH, the web ports and the DVR proxies.

The full list per host is `Site.public_tcp_ports`; a clash with another
service's port is checked in ports.py.
"""

from __future__ import annotations

from pi_stream.site.fields import Fields


def parse_firewall(section: Fields) -> tuple[int, ...]:
    """`firewall: {extra_tcp_ports: [8080]}`; a port that is not a TCP port is reported and left out."""
    extra_ports = []
    for i, port in enumerate(section.items("extra_tcp_ports")):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            section.error(f"extra_tcp_ports[{i}]", f"{port!r} is not a TCP port (1-65535)")
        else:
            extra_ports.append(port)
    section.done()
    return tuple(extra_ports)
