"""site.yml `topology:` and `relay:`: how the appliance is reached from outside the home.

- `lan` (the default): viewers are on the Pi's own network. The firewall admits
  the web ports from private addresses only, so a router that forwards a port
  by mistake still exposes nothing.
- `port_forward`: the router forwards the web port to the Pi, which faces the
  internet itself. HTTPS is then required.
- `relay`: the Pi dials out, over WireGuard, to one or more relays (hosts of the
  inventory group `pi_stream_relays`, e.g. small VPSs) and pushes each camera
  once to the relay in use; remote viewers log in at the relay, which serves
  HLS to as many of them as come. Nothing is forwarded to the Pi: its web ports
  stay private as with `lan`. Relays are listed in order of preference: the Pi
  uses the first that answers through the tunnel, and returns to an earlier one
  once it has answered for `failback_seconds`.

Inside the tunnel every relay also holds one shared "service address": the Pi
pushes to it, and moves it (WireGuard's allowed IPs) to the relay it uses, so
nginx-rtmp never needs to know which relay that is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pi_stream.site.dvr_proxy import DNS_NAME_RE, DvrProxy, WebSocketPort
from pi_stream.site.fields import Fields, text_problem
from pi_stream.site.inventory import Host

TOPOLOGIES = ("lan", "port_forward", "relay")
DEFAULT_TUNNEL_SUBNET = "10.77.0.0/24"
DEFAULT_WIREGUARD_PORT = 51820
DEFAULT_ADMIN_PORT = 8443
TUNNEL_INTERFACE = "pistream"  # /etc/wireguard/pistream.conf, wg-quick@pistream
FIRST_APPLIANCE_OFFSET = 10  # relays are .1, .2, ...; the Pis .10, .11, ...; the service address the last
MAX_RELAYS = 8
URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass(frozen=True)
class Relay:
    host: str  # inventory name, in the pi_stream_relays group
    endpoint: str  # what the Pi dials: the inventory's ansible_host (a public address or name)
    url: str  # the origin remote viewers open, https://NAME[:PORT]
    tunnel_address: str  # this relay's own address inside the tunnel


@dataclass(frozen=True)
class Remote:
    topology: str = "lan"
    relays: tuple[Relay, ...] = ()
    tunnel_subnet: str = DEFAULT_TUNNEL_SUBNET
    wireguard_port: int = DEFAULT_WIREGUARD_PORT
    failback_seconds: int = 10
    # Viewers who may pass a relay's login to the appliances' own pages (status) and their DVR proxies.
    admins: tuple[str, ...] = ()
    admin_port: int = DEFAULT_ADMIN_PORT  # the first Pi's pages on each relay; the next Pi's on the next port
    # Probes through the tunnel: a relay that misses this many in a row is gone.
    probe_interval_seconds: int = 1
    probe_failures: int = 3

    @property
    def uses_relays(self) -> bool:
        return self.topology == "relay"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.tunnel_subnet)

    @property
    def service_address(self) -> str:
        """The address the Pis push to: held by every relay, routed by each Pi to the relay it uses."""
        return str(self.network[-2])

    def appliance_address(self, index: int) -> str:
        """The tunnel address of the site's index-th appliance host (0-based, inventory order)."""
        return str(self.network[FIRST_APPLIANCE_OFFSET + index])

    def relay(self, name: str) -> Relay | None:
        return next((r for r in self.relays if r.host == name), None)

    def other_origins(self, name: str) -> tuple[str, ...]:
        return tuple(r.url for r in self.relays if r.host != name)


def parse_remote(
    top: Fields, relay_section: Fields, relay_hosts: tuple[Host, ...], appliance_count: int, https: bool, https_port: int,
    viewers: tuple[str, ...] = (),
) -> Remote:
    topology = top.choice("topology", TOPOLOGIES, "lan")
    if topology == "port_forward" and not https:
        top.error("topology", "port_forward puts the Pi on the internet: set web.https: true (or use topology: relay)")
    if topology != "relay":
        if relay_section.data:
            relay_section.error(
                "", f"relays are used with topology: relay only (the site says {topology}); remove this section or set topology: relay"
            )
        if relay_hosts:
            relay_section.error(
                "", f"the inventory has hosts in pi_stream_relays ({', '.join(h.name for h in relay_hosts)}) but topology is {topology}: "
                "set topology: relay, or move them out of that group"
            )
        relay_section.raw("relays")
        relay_section.raw("tunnel_subnet")
        relay_section.raw("wireguard_port")
        relay_section.raw("failback_seconds")
        relay_section.raw("admins")
        relay_section.raw("admin_port")
        relay_section.done()
        return Remote(topology=topology)
    subnet = relay_section.string("tunnel_subnet", DEFAULT_TUNNEL_SUBNET)
    network = None
    try:
        network = ipaddress.IPv4Network(subnet)
    except ValueError:
        relay_section.error("tunnel_subnet", f"{subnet!r} is not an IPv4 network like {DEFAULT_TUNNEL_SUBNET}")
    if network is not None:
        if not network.is_private:
            relay_section.error("tunnel_subnet", f"{subnet} is not a private network: use one of 10/8, 172.16/12, 192.168/16")
        elif network.num_addresses < FIRST_APPLIANCE_OFFSET + appliance_count + 2:
            relay_section.error("tunnel_subnet", f"{subnet} is too small for {appliance_count} Pi(s) and the relays: use a /24")
    port = relay_section.integer("wireguard_port", DEFAULT_WIREGUARD_PORT, 1, 65535)
    failback = relay_section.integer("failback_seconds", 10, 2, 3600)
    by_name = {h.name: h for h in relay_hosts}
    relays: list[Relay] = []
    entries = relay_section.items("relays")
    if not entries:
        relay_section.error(
            "relays", "topology relay needs at least one relay, e.g. relays: [{host: relay1}] (hosts of the inventory group pi_stream_relays)"
        )
    if len(entries) > MAX_RELAYS:
        relay_section.error("relays", f"at most {MAX_RELAYS} relays")
    for i, entry in enumerate(entries[:MAX_RELAYS]):
        item = Fields(entry, relay_section.at(f"relays[{i}]"), relay_section.file, relay_section.problems)
        name = item.string("host", "")
        url = item.string("url", "")
        item.done()
        host = by_name.get(name)
        if host is None:
            known = ", ".join(by_name) or "none"
            item.error("host", f"{name!r} is not a host of the inventory group pi_stream_relays (relays there: {known})")
            continue
        if any(r.host == name for r in relays):
            item.error("host", f"{name} is listed twice")
            continue
        if url and text_problem(url, URL_RE):
            item.error("url", f"{url!r} is not an origin like https://cams.example.org (https, no path)")
            url = ""
        if not url:
            if text_problem(host.address, DNS_NAME_RE) and not _is_ip(host.address):
                item.error("url", f"give the relay's public origin: its inventory address {host.address!r} is not a name or address")
            default_port = "" if https_port == 443 else f":{https_port}"
            address = f"[{host.address}]" if ":" in host.address else host.address
            url = f"https://{address}{default_port}"
        tunnel = str(network[1 + i]) if network is not None else ""
        relays.append(Relay(host=name, endpoint=host.address, url=url, tunnel_address=tunnel))
    listed = {r.host for r in relays}
    for name in by_name:
        if name not in listed and entries:
            relay_section.error(
                "relays", f"the inventory's relay {name} is not listed here: add {{host: {name}}} or remove it from pi_stream_relays"
            )
    if not https:
        top.error("topology", "relays face the internet: set web.https: true")
    admins = relay_section.viewer_names("admins", viewers)
    admin_port = relay_section.integer("admin_port", DEFAULT_ADMIN_PORT, 1, 65535)
    relay_section.done()
    return Remote(
        topology="relay", relays=tuple(relays), tunnel_subnet=subnet, wireguard_port=port, failback_seconds=failback,
        admins=admins, admin_port=admin_port,
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def route_name(host: str) -> str:
    """A Pi's name as a route's (a login scope, a file name): inventory names may hold '.', route names may not."""
    return re.sub(r"[^a-z0-9_-]", "-", host.lower())[:32]


def relay_routes(remote: Remote, appliances: tuple[Host, ...], dvrs: tuple[DvrProxy, ...], https_port: int) -> tuple[DvrProxy, ...]:
    """What every relay publishes of the Pis through the tunnel, behind its own login (relay.admins only):
    each Pi's own pages (status, its login) on admin_port, admin_port + 1, ..., and each DVR a Pi proxies
    on a port of its own, on that same port (a DVR page's scripts name their WebSocket ports).

    They are DVR proxies of the relay's, whose upstream is the Pi's TLS port at its tunnel address."""
    if not remote.uses_relays or not remote.admins:
        return ()
    routes = []
    for index, pi in enumerate(appliances):
        address = remote.appliance_address(index)
        routes.append(DvrProxy(
            name=route_name(pi.name), pi="", address=address, http_port=https_port, websocket_ports=(),
            # The Pi's own login through here: its 401s count at the relay's fail2ban too.
            login_paths=("/auth/login",), server_name="", https_port=remote.admin_port + index, viewer_auth=True,
            viewers=remote.admins, cache_mb=0, upload_mb=1, upstream_scheme="https", site_field="relay.admin_port",
        ))
        for dvr in dvrs:
            if dvr.pi != pi.name or dvr.server_name:
                continue  # a DVR told apart by name on the Pi's 443 needs that name in front of the relays: not published
            routes.append(DvrProxy(
                name=dvr.name, pi="", address=address, http_port=dvr.https_port,
                websocket_ports=tuple(WebSocketPort(tls=ws.tls, plain=ws.tls) for ws in dvr.websocket_ports),
                login_paths=dvr.login_paths, server_name="", https_port=dvr.https_port, viewer_auth=True,
                viewers=remote.admins, cache_mb=0, upload_mb=dvr.upload_mb, upstream_scheme="https",
                site_field=dvr.site_field,
            ))
    return tuple(routes)
