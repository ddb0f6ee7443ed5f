"""site.yml `status:`: which addresses may scrape the Prometheus metrics without logging in.

Named metrics, not status: pi_stream.status is `pi-stream status`, which reads
a deployed Pi's supervisor.
Addresses are normalised to networks and deduplicated.
"""

from __future__ import annotations

import ipaddress

from pi_stream.site.fields import Fields


def parse_metrics_allow(section: Fields) -> tuple[str, ...]:
    """`status: {metrics_allow: [192.0.2.5/32]}`: who may scrape the Prometheus metrics."""
    allowed = []
    for i, entry in enumerate(section.items("metrics_allow")):
        try:
            allowed.append(str(ipaddress.ip_network(str(entry), strict=False)))
        except ValueError:
            section.error(f"metrics_allow[{i}]", f"{entry!r} is not an address or network like 192.0.2.5 or 192.0.2.0/24")
    section.done()
    return tuple(dict.fromkeys(allowed))
