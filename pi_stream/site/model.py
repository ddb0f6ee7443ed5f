"""The `Site` model: every section's result in one frozen object, and the questions asked across sections.

Only parse_site (in __init__.py) builds one, and only when no section had a
problem, so code that holds a `Site` may trust every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pi_stream.credentials import VIEWERS_FILE
from pi_stream.nginx_source import DEFAULT_NGINX_SOURCE, NginxSource
from pi_stream.site.auth import Auth
from pi_stream.site.cameras import Camera
from pi_stream.site.capture_schedule import CaptureSchedule
from pi_stream.site.dvr_proxy import DvrProxy
from pi_stream.site.fail2ban import Fail2ban
from pi_stream.site.hls import Hls
from pi_stream.site.inventory import Host
from pi_stream.site.login import Login
from pi_stream.site.nvrs import Nvr
from pi_stream.site.remote import Remote, relay_routes
from pi_stream.site.storage import DEFAULT_SNAPSHOTS_PATH, Storage
from pi_stream.site.updates import DEFAULT_UPDATE_POLICY, UpdatePolicy
from pi_stream.site.web import Web
from pi_stream.site.webrtc import WebRtc


@dataclass(frozen=True)
class Site:
    directory: Path
    name: str
    hosts: tuple[Host, ...]
    cameras: tuple[Camera, ...]
    web: Web
    hls: Hls
    fail2ban: Fail2ban
    encoder_candidates: tuple[str, ...]
    extra_tcp_ports: tuple[int, ...]
    nginx_install_method: str
    viewers: tuple[str, ...]
    auth: Auth
    # viewer -> the cameras they may watch; a viewer not named in site.yml `viewers:` sees every camera.
    camera_access: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nvrs: tuple[Nvr, ...] = ()
    storage: Storage = Storage(DEFAULT_SNAPSHOTS_PATH, "", False, 10)
    capture: CaptureSchedule = CaptureSchedule(2, 5, 300, 10, 1800, 20, 60)
    # Addresses (CIDR) allowed to scrape /metrics without logging in; the Pi itself always may.
    metrics_allow: tuple[str, ...] = ()
    nginx_source: NginxSource = DEFAULT_NGINX_SOURCE
    build_hosts: tuple[Host, ...] = ()  # inventory group pi_stream_builders
    dvrs: tuple[DvrProxy, ...] = ()  # site.yml dvr_proxy
    updates: UpdatePolicy = DEFAULT_UPDATE_POLICY
    webrtc: WebRtc | None = None  # site.yml webrtc: None = HLS only
    remote: Remote = Remote()  # site.yml topology: and relay:
    relays: tuple[Host, ...] = ()  # inventory group pi_stream_relays, in site.yml relay.relays order
    # The viewers with a password (viewers.htpasswd); `viewers` adds those who log in by identity alone.
    password_viewers: tuple[str, ...] = ()
    identities: dict[str, str] = field(default_factory=dict)  # e-mail address (lower case) -> viewer
    login: Login = Login()  # site.yml login:
    # Warnings about the site's files that do not stop it loading (site.yml's passwords readable by others);
    # the command prints them, once, wherever it loads the site.
    notes: tuple[str, ...] = ()

    def secret_fields(self) -> tuple[str, ...]:
        """The site.yml fields holding a password, as field paths (the passwords themselves are never shown)."""
        fields = [f"nvrs.{nvr.name}.password" for nvr in self.nvrs if nvr.password]
        fields += [f"cameras[{i}].source.password" for i, c in enumerate(self.cameras) if c.source.password and not c.source.nvr]
        return tuple(fields)

    def nvr(self, name: str) -> Nvr:
        return next(n for n in self.nvrs if n.name == name)

    def nvrs_on(self, host: str) -> tuple[Nvr, ...]:
        used = {c.source.nvr for c in self.cameras_on(host)}
        return tuple(n for n in self.nvrs if n.name in used)

    def waiting_cameras(self, host: str) -> dict[str, tuple[Camera, ...]]:
        """Per NVR, the always-on cameras beyond its session budget: they wait while higher priorities run."""
        waiting = {}
        for nvr in self.nvrs_on(host):
            ranked = sorted(
                (c for c in self.cameras_on(host) if c.source.nvr == nvr.name and not c.on_demand),
                key=lambda c: -c.priority,
            )
            if len(ranked) > nvr.max_sessions:
                waiting[nvr.name] = tuple(ranked[nvr.max_sessions :])
        return waiting

    def dvrs_on(self, host: str) -> tuple[DvrProxy, ...]:
        """The DVR proxies a host's nginx runs: a Pi's own, or on a relay its routes to the Pis (relay.admins)."""
        if self.is_relay(host):
            return relay_routes(self.remote, self.hosts, self.dvrs, self.web.https_port)
        return tuple(d for d in self.dvrs if d.pi == host)

    def host(self, name: str) -> Host:
        return next(h for h in (*self.hosts, *self.relays) if h.name == name)

    @property
    def provisioned_hosts(self) -> tuple[Host, ...]:
        """Every host that gets a bundle: the appliances, then the relays."""
        return (*self.hosts, *self.relays)

    def is_relay(self, name: str) -> bool:
        return any(h.name == name for h in self.relays)

    def relay_cameras(self) -> tuple[Camera, ...]:
        """The cameras the Pis push to the relay they use: every always-on camera. An on-demand camera
        runs only while its playlist is asked for on the Pi, which a relay's viewers never do."""
        if not self.remote.uses_relays:
            return ()
        return tuple(c for c in self.cameras if not c.on_demand)

    def served_cameras(self, host: str) -> tuple[Camera, ...]:
        """The cameras whose HLS this host serves: its own, or on a relay those the Pis push to it."""
        return self.relay_cameras() if self.is_relay(host) else self.cameras_on(host)

    def private_web(self, host: str) -> bool:
        """Whether the host's firewall admits the web ports from private addresses only (lan, and a Pi behind relays)."""
        return not self.is_relay(host) and self.remote.topology != "port_forward"

    def public_udp_ports(self, host: str) -> tuple[int, ...]:
        """Inbound UDP ports: WireGuard on a relay (the Pis dial it; a Pi itself listens on none)."""
        return (self.remote.wireguard_port,) if self.is_relay(host) else ()

    def tunnel_tcp_ports(self, host: str) -> tuple[int, ...]:
        """TCP ports admitted from inside the tunnel only: RTMP on a relay, which the Pis push to."""
        from pi_stream.site.ports import RTMP_PORT

        return (RTMP_PORT,) if self.is_relay(host) else ()

    def tunnel_address(self, host: str) -> str:
        """This host's address inside the WireGuard tunnel; "" on a site without relays."""
        if not self.remote.uses_relays:
            return ""
        relay = self.remote.relay(host)
        if relay is not None:
            return relay.tunnel_address
        return self.remote.appliance_address([h.name for h in self.hosts].index(host))

    def cameras_on(self, host: str) -> tuple[Camera, ...]:
        return tuple(c for c in self.cameras if c.host == host)

    def cameras_for(self, viewer: str, host: str) -> tuple[Camera, ...]:
        """The cameras on `host` that `viewer` may watch."""
        allowed = self.camera_access.get(viewer)
        return tuple(c for c in self.served_cameras(host) if allowed is None or c.name in allowed)

    @property
    def viewers_file(self) -> Path:
        return self.directory / VIEWERS_FILE

    def public_tcp_ports(self, host: str) -> tuple[int, ...]:
        """Inbound TCP ports the host firewall opens: SSH first, then the web ports, then extras."""
        ports = [self.host(host).ssh_port, self.web.http_port]
        if self.web.https:
            ports.append(self.web.https_port)
        if self.is_relay(host):
            for route in self.dvrs_on(host):
                ports.extend(route.listen_ports())
            return tuple(dict.fromkeys(ports))
        for dvr in self.dvrs_on(host):
            ports.extend(dvr.listen_ports())
        if self.webrtc_cameras_on(host):
            ports.append(self.webrtc.relay_port)
        ports.extend(self.extra_tcp_ports)
        return tuple(dict.fromkeys(ports))

    def open_tcp_ports(self, host: str) -> tuple[int, ...]:
        """The ports of public_tcp_ports admitted from any address: all of them, except on a host with private_web,
        where only SSH (the deployment's way in) and a WebRTC relay port the site publishes (public_address) are."""
        ports = self.public_tcp_ports(host)
        if not self.private_web(host):
            return ports
        published = self.webrtc.relay_port if self.webrtc is not None and self.webrtc.public_address and self.webrtc_cameras_on(host) else None
        return tuple(p for p in ports if p == self.host(host).ssh_port or p == published)

    def private_tcp_ports(self, host: str) -> tuple[int, ...]:
        """The ports of public_tcp_ports admitted from private addresses only (RFC 1918, link-local, ULA)."""
        open_ports = self.open_tcp_ports(host)
        return tuple(p for p in self.public_tcp_ports(host) if p not in open_ports)

    def webrtc_cameras_on(self, host: str) -> tuple[Camera, ...]:
        """The cameras this host offers over WebRTC; none, and the host runs no OME."""
        if self.webrtc is None:
            return ()
        return tuple(c for c in self.cameras_on(host) if self.webrtc.serves(c.name))
