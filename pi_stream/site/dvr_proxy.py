"""site.yml `dvr_proxy:`: DVR web interfaces published through a Pi's nginx, over HTTPS only.

A vendor preset (`DVR_PRESETS`) gives the ports and login paths the vendor's page
hard-codes; the site can override each. Whether a DVR's ports clash with anything
else on its Pi is checked in ports.py, across sections.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pi_stream.site.fields import NAME_HINT, NAME_RE, Fields, text_problem
from pi_stream.site.inventory import Host
from pi_stream.site.web import Web

DNS_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
LOGIN_PATH_RE = re.compile(r"^/[A-Za-z0-9/_.-]*$")


@dataclass(frozen=True)
class WebSocketPort:
    """A DVR's separate WebSocket server: the Pi listens with TLS on `tls` and passes to the DVR's plain `plain`."""

    tls: int
    plain: int


@dataclass(frozen=True)
class DvrPreset:
    http_port: int
    websocket_ports: tuple[WebSocketPort, ...]
    # Where a 401 from the DVR is a failed login (fail2ban counts it) and nginx limits the rate.
    login_paths: tuple[str, ...]


# Ports a vendor's web page hard-codes in its JavaScript, which the proxy must therefore listen on.
DVR_PRESETS: dict[str, DvrPreset] = {
    # Pages on 80; video over a WebSocket server of its own on 7681, which the
    # page asks for as wss://HOST:7682 when it was loaded over HTTPS.
    "hikvision": DvrPreset(
        http_port=80,
        websocket_ports=(WebSocketPort(tls=7682, plain=7681),),
        login_paths=("/ISAPI/Security/userCheck", "/ISAPI/Security/sessionLogin"),
    ),
    # A DVR whose page carries its WebSocket on the HTTP port itself (the main
    # site passes upgrades), or whose ports are given in site.yml.
    "generic": DvrPreset(http_port=80, websocket_ports=(), login_paths=()),
}


@dataclass(frozen=True)
class DvrProxy:
    """A DVR's web interface, published through a Pi's nginx; the DVR itself stays reachable only by that Pi."""

    name: str
    pi: str  # the inventory host that proxies it
    address: str  # the DVR's IP address, as the Pi reaches it
    http_port: int
    websocket_ports: tuple[WebSocketPort, ...]
    login_paths: tuple[str, ...]
    server_name: str  # "" when it has an HTTPS port of its own and answers any name there
    https_port: int
    viewer_auth: bool  # the appliance's login in front of the DVR's own
    viewers: tuple[str, ...]  # who passes that login (all the site's viewers by default)
    cache_mb: int  # static assets (scripts, styles, images); 0: no cache
    upload_mb: int
    # "https" for a route a relay publishes to a Pi through the tunnel (site.relay_routes): the Pi's own TLS ports.
    upstream_scheme: str = "http"
    # Where a clash of its ports is reported: "dvr_proxy.NAME", or "relay.admin_port" for a Pi's own pages on a relay.
    site_field: str = ""

    @property
    def carries_pi_pages(self) -> bool:
        """A relay's route to a Pi's own pages (status, login, player): the one proxy whose upstream is this
        product, so the appliance's paths (/auth/, /hls/, ...) must reach it. Every other is a DVR's."""
        return self.site_field == "relay.admin_port"

    @property
    def ip_family(self) -> str:
        """nftables' address family keyword for this DVR's address."""
        return "ip6" if ":" in self.address else "ip"

    def listen_ports(self) -> tuple[int, ...]:
        return (self.https_port, *(w.tls for w in self.websocket_ports))


def parse_dvr_proxies(section: Fields, web: Web, hosts: tuple[Host, ...], viewers: tuple[str, ...]) -> tuple[DvrProxy, ...]:
    """`dvr_proxy: {shed: {host, preset, server_name, ...}}`: DVR web interfaces published through a Pi."""
    dvrs = []
    host_names = [h.name for h in hosts]
    for name in list(section.data):
        entry = section.sub(str(name))
        if not isinstance(name, str) or text_problem(name, NAME_RE):
            entry.error("", f"{name!r} is not a valid DVR name: {NAME_HINT}")
        if not web.https:
            entry.error("", "a DVR proxy needs web.https: true: the DVR's login and video must not cross the network in clear")
        preset_name = entry.choice("preset", tuple(DVR_PRESETS), "hikvision")
        preset = DVR_PRESETS[preset_name]
        address = entry.string("host", "")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            hint = "missing: " if "host" not in entry.data else f"{address!r} is not an IP address: "
            entry.error("host", hint + "the DVR's address as the Pi reaches it, e.g. 192.168.1.64 (the Pi's firewall rules need an address)")
        pi = entry.string("pi", host_names[0] if len(host_names) == 1 else "")
        if not pi and host_names:
            entry.error("pi", f"several hosts in the inventory: say which one proxies this DVR ({', '.join(host_names)})")
        elif pi and host_names and pi not in host_names:
            entry.error("pi", f"{pi!r} is not in the inventory; known hosts: {', '.join(host_names)}")
        server_name = entry.string("server_name", "", DNS_NAME_RE, "a DNS name like dvr.example.org")
        https_port = entry.integer("https_port", web.https_port, 1, 65535)
        if https_port == web.https_port and not server_name and web.https:
            entry.error(
                "server_name",
                f"the DVR shares port {https_port} with the appliance (web.https_port): give it a DNS name of its own "
                "(e.g. dvr.example.org), or an https_port of its own (e.g. 8443)",
            )
        elif server_name and server_name == web.server_name:
            entry.error("server_name", f"{server_name!r} is the appliance's own web.server_name: the DVR needs a name of its own")
        auth = entry.boolean("viewer_auth", False)
        allowed = parse_dvr_viewers(entry, viewers, auth)
        dvrs.append(
            DvrProxy(
                name=str(name),
                pi=pi,
                address=address,
                http_port=entry.integer("http_port", preset.http_port, 1, 65535),
                websocket_ports=parse_websocket_ports(entry, preset),
                login_paths=parse_login_paths(entry, preset),
                server_name=server_name,
                https_port=https_port,
                viewer_auth=auth,
                viewers=allowed,
                cache_mb=entry.integer("cache_mb", 256, 0, 100_000),
                upload_mb=entry.integer("upload_mb", 128, 1, 4096),
                site_field=f"dvr_proxy.{name}",
            )
        )
        entry.done()
    return tuple(dvrs)


def parse_websocket_ports(entry: Fields, preset: DvrPreset) -> tuple[WebSocketPort, ...]:
    """`websocket_ports: [{tls: 7682, plain: 7681}]`; the preset's when not given."""
    if entry.absent("websocket_ports"):
        return preset.websocket_ports
    ports = []
    for i, item in enumerate(entry.items("websocket_ports")):
        pair = Fields(item, entry.at(f"websocket_ports[{i}]"), entry.file, entry.problems)
        for key in ("tls", "plain"):
            if key not in pair.data:
                pair.error(key, "missing: give both the port the page asks for (tls) and the DVR's own plain port (plain)")
        ports.append(WebSocketPort(tls=pair.integer("tls", 1, 1, 65535), plain=pair.integer("plain", 1, 1, 65535)))
        pair.done()
    return tuple(ports)


def parse_login_paths(entry: Fields, preset: DvrPreset) -> tuple[str, ...]:
    if entry.absent("login_paths"):
        return preset.login_paths
    paths = []
    for i, path in enumerate(entry.items("login_paths")):
        if not isinstance(path, str) or text_problem(path, LOGIN_PATH_RE):
            entry.error(f"login_paths[{i}]", f"{path!r} is not a path prefix like /ISAPI/Security/userCheck")
        else:
            paths.append(path)
    return tuple(paths)


def parse_dvr_viewers(entry: Fields, viewers: tuple[str, ...], auth: bool) -> tuple[str, ...]:
    if entry.absent("viewers"):
        return viewers if auth else ()
    if not auth:
        entry.error("viewers", "only with viewer_auth: true (the viewers who pass the appliance's login in front of the DVR)")
    return entry.viewer_names("viewers", viewers)
