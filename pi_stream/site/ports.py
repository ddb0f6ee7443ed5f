"""Port clashes on each host, across sections: SSH, RTMP, `web:`, `firewall:`, `dvr_proxy:` and `webrtc:`.

Not a section of its own: it runs after them all, because a clash is between two
of them. TLS sites told apart by name (SNI) may share a port.
"""

from __future__ import annotations

from pi_stream.site.dvr_proxy import DvrProxy
from pi_stream.site.fields import Problems
from pi_stream.site.inventory import Host
from pi_stream.site.web import Web
from pi_stream.site.webrtc import INTERNAL_PORTS, WebRtc

RTMP_PORT = 1935  # nginx-rtmp listens on 127.0.0.1 only, but the port is still taken on the host


def check_ports(
    web: Web, hosts: tuple[Host, ...], extra: tuple[int, ...], dvrs: tuple[DvrProxy, ...], file: str, problems: Problems,
    webrtc: WebRtc | None = None,
) -> None:
    """Two services cannot share a port on one host, except TLS sites told apart by name (SNI and Host)."""
    # (port, owner, name): name None claims the port alone; "*" is the appliance's own site, the default
    # for its port; a DVR's server name lets it share a TLS port with others of different names.
    claims: list[tuple[int, str, str | None]] = [(RTMP_PORT, "RTMP (internal)", None), (web.http_port, "web.http_port", None)]
    if web.https:
        claims.append((web.https_port, "web.https_port", "*"))
    if webrtc is not None:
        claims.append((webrtc.relay_port, "webrtc.relay_port", None))
        claims += [(port, f"OvenMediaEngine (internal, port {port})", None) for port in INTERNAL_PORTS]
    claims += [(port, f"firewall.extra_tcp_ports[{i}]", None) for i, port in enumerate(extra)]
    for host in hosts:
        host_claims = [(host.ssh_port, f"SSH of host {host.name}", None), *claims]
        for dvr in dvrs:
            if dvr.pi == host.name:
                host_claims.append((dvr.https_port, f"dvr_proxy.{dvr.name}.https_port", dvr.server_name or None))
                host_claims += [
                    (ws.tls, f"dvr_proxy.{dvr.name}.websocket_ports[{i}].tls", dvr.server_name or None)
                    for i, ws in enumerate(dvr.websocket_ports)
                ]
        owners: dict[int, list[tuple[str, str | None]]] = {}
        for port, owner, name in host_claims:
            previous = owners.setdefault(port, [])
            if previous and owner.startswith("firewall.extra_tcp_ports") and previous[0][0].startswith("SSH"):
                continue  # opening the SSH port again is harmless
            if previous and not shares_port(name, previous):
                first = previous[0][0]
                path = owner if not owner.startswith(("RTMP", "SSH", "OvenMediaEngine")) else first
                hint = " or give both a server_name of their own" if name is not None and all(n is not None for _, n in previous) else ""
                problems.add(file, path, f"port {port} is already used by {first}; choose another port{hint}")
                continue
            previous.append((owner, name))


def shares_port(name: str | None, previous: list[tuple[str, str | None]]) -> bool:
    """A named TLS site may join a port whose sites all have other names (or is the appliance's default site)."""
    if name is None or name in ("*", "_"):
        return False
    return all(other is not None and other != name for _, other in previous)


def check_relay_route_ports(remote, appliances, relays, dvrs, web: Web, file: str, problems: Problems) -> None:
    """On a relay: SSH, the web ports and every route's ports (relay.admin_port onwards, DVRs' own) each once."""
    from pi_stream.site.remote import relay_routes

    routes = relay_routes(remote, appliances, dvrs, web.https_port)
    for relay in relays:
        owners: dict[int, str] = {relay.ssh_port: f"SSH of relay {relay.name}", web.http_port: "web.http_port", web.https_port: "web.https_port"}
        for route in routes:
            for port in route.listen_ports():
                what = route.site_field
                if port in owners and owners[port] != what:
                    problems.add(file, what, f"port {port} on relay {relay.name} is already used by {owners[port]}; choose another port")
                owners.setdefault(port, what)
