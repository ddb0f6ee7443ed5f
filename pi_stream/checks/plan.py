"""The checks: which ones a host gets for its site, in order, and what each needs to have passed first.

This is the one list. `pi-stream verify` runs it host by host (pi_stream.verify); the pytest suite runs
each entry as one test (pi_stream/checks/test_host.py, test_web.py, test_cameras.py, grouped by `group`).
docs/checks.md says what each check means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from pi_stream.checks.connection import media_cookie, ssl_context_of
from pi_stream.checks.host import (
    encoder_choice,
    files_match,
    firewall_loaded,
    hls_on_tmpfs,
    identity_providers,
    jail_active,
    listening,
    reachable,
    rtmp_loopback_only,
    security_updates,
    service_state,
    tunnel_handshakes,
)
from pi_stream.checks.media import capture_state, latest_snapshot, playlist_advances, segment_decodes
from pi_stream.checks.web import alpn_choice, expect_status, hardened_headers, log_in, public_page, served_certificate_matches, signalling_url
from pi_stream.site import Camera, Host, Site
from pi_stream.webrtc_checks import ome_streams, refused_without_token, signalling_offer, streams_settled

if TYPE_CHECKING:
    from pi_stream.checks.run import HostContext, SiteRun

HOST, WEB, CAMERAS = "host", "web", "cameras"  # the test modules: pi_stream/checks/test_GROUP.py
SSH = "ssh reachable"
FILES = "deployed files = rendered bundle"
TLS = "TLS certificate served"
IDENTITY = "identity providers answer"
PI_SERVICES = ("nginx", "fail2ban", "pi-stream-firewall", "pi-stream-auth.socket", "pi-stream-capture", "pi-stream-retention.timer")
RELAY_SITE_PI_SERVICES = ("wg-quick@pistream", "pi-stream-relay")
RELAY_SERVICES = ("nginx", "fail2ban", "pi-stream-firewall", "pi-stream-auth.socket", "wg-quick@pistream")
JAILS = ("pi-stream-auth", "pi-stream-media")

Probe = Callable[["HostContext"], tuple[bool, str]]


class NotApplicable(Exception):
    """Raised by a check that does not apply now, which is no failure: a camera waiting for an NVR session its budget
    does not have, a relay on standby. verify leaves it out; pytest skips it with the reason."""


class CheckFailed(Exception):
    """A probe's failure whose message says it all: shown as it is, without the exception's type."""


@dataclass(frozen=True)
class Step:
    """One check of one host: its name (unique on the host; `HOST-NAME` is its pytest id), the test module that
    runs it, the probe, and the checks it needs to have passed first."""

    name: str
    group: str
    probe: Probe
    needs: tuple[str, ...] = (SSH,)


def login_check(user: str) -> str:
    return f"login as {user}"


def plan(run: SiteRun, host: Host) -> list[Step]:
    """The checks of `host` (a Pi or a relay of run.site), in the order verify runs and shows them."""
    site = run.site
    if site.is_relay(host.name):
        return relay_plan(site, host, run.user)
    return pi_plan(site, host, run.user)


def on_remote(function: Callable[..., tuple[bool, str]], *args) -> Probe:
    """A probe of testinfra's host: function(remote, *args)."""
    return lambda context: function(context.remote, *args)


def pi_plan(site: Site, host: Host, user: str) -> list[Step]:
    steps = [Step(SSH, HOST, lambda c: reachable(c.remote, c.host), needs=()), Step(FILES, HOST, lambda c: files_match(c.remote, c.files))]
    services = [*PI_SERVICES, *(RELAY_SITE_PI_SERVICES if site.relays else ())]
    steps += [Step(f"service {service} active", HOST, on_remote(service_state, service)) for service in services]
    ports = [site.web.http_port] + ([site.web.https_port] if site.web.https else [])
    steps += [Step(f"port {port}/tcp listening", HOST, on_remote(listening, port, "on all addresses")) for port in ports]
    steps += [
        Step("RTMP on loopback only", HOST, on_remote(rtmp_loopback_only)),
        Step("HLS segments on tmpfs", HOST, on_remote(hls_on_tmpfs)),
        Step("firewall table loaded", HOST, on_remote(firewall_loaded)),
        *[Step(f"fail2ban jail {jail}", HOST, on_remote(jail_active, jail)) for jail in JAILS],
        Step("H.264 encoder", HOST, on_remote(encoder_choice)),
        *identity_steps(site),
    ]
    if site.relays:
        steps += [
            Step("tunnel to every relay", HOST, on_remote(tunnel_handshakes, site, site.relays)),
            Step("relay in use", HOST, relay_in_use),
        ]
    steps.append(Step("security updates", HOST, on_remote(security_updates, site)))
    webrtc = [c.name for c in site.webrtc_cameras_on(host.name)]
    if webrtc:
        relay_port = site.webrtc.relay_port
        steps += [
            Step("service pi-stream-ome active", HOST, on_remote(service_state, "pi-stream-ome")),
            Step(f"WebRTC relay {relay_port}/tcp listening", HOST, on_remote(listening, relay_port, "TURN over TCP")),
            Step("OvenMediaEngine has every WebRTC camera", HOST, lambda c: streams_settled(lambda: ome_streams(c.remote), webrtc)),
        ]

    steps += tls_steps(site)
    if site.web.https:
        steps.append(Step("HTTP/2 " + ("offered" if site.web.http2 else "off (web.http2: false)"), WEB, lambda c: alpn_choice(c.host, site)))
    steps += [
        Step("page served before login, naming no camera", WEB, lambda c: public_page(c.anonymous, c.url, site, c.host)),
        Step("security headers, no version", WEB, lambda c: hardened_headers(c.anonymous, c.url, site)),
    ]
    steps += [Step(f"{camera.name}: playlist refused before login", WEB, refused_before_login(camera)) for camera in site.cameras_on(host.name)]
    steps += [Step(f"{name}: WebRTC signalling refused before login", WEB, signalling_refused(name)) for name in sorted(webrtc)]
    if not user:  # password login off (site.yml login.password: false): nothing here can log in, so no camera is seen
        return steps
    steps.append(Step(login_check(user), WEB, lambda c: log_in_as(c, site.cameras_for(user, host.name))))

    for camera in site.cameras_for(user, host.name):
        state = f"{camera.name}: capture state"
        live = (SSH, login_check(user), state)
        steps += [
            Step(state, CAMERAS, capture(camera), needs=(SSH, login_check(user))),
            Step(f"{camera.name}: playlist live and advancing", CAMERAS, when_live(camera, advancing(camera)), needs=live),
            Step(f"{camera.name}: segment decodes as H.264", CAMERAS, when_live(camera, decodes(camera)), needs=live),
            Step(f"{camera.name}: latest snapshot", CAMERAS, when_live(camera, snapshot(camera)), needs=live),
        ]
        if camera.name in webrtc:
            offered = when_live(camera, offer(site, host, camera))
            steps.append(Step(f"{camera.name}: WebRTC offer through the relay", CAMERAS, offered, needs=live))
    return steps


def relay_plan(site: Site, relay: Host, user: str) -> list[Step]:
    """A relay: its files and services, its tunnel to every Pi, and, on the relay in use, each camera's HLS through it."""
    steps = [Step(SSH, HOST, lambda c: reachable(c.remote, c.host), needs=()), Step(FILES, HOST, lambda c: files_match(c.remote, c.files))]
    steps += [Step(f"service {service} active", HOST, on_remote(service_state, service)) for service in RELAY_SERVICES]
    steps += [
        Step("firewall table loaded", HOST, on_remote(firewall_loaded)),
        *[Step(f"fail2ban jail {jail}", HOST, on_remote(jail_active, jail)) for jail in JAILS],
        Step("tunnel to every Pi", HOST, on_remote(tunnel_handshakes, site, site.hosts)),
        *identity_steps(site),
    ]
    steps += tls_steps(site)
    steps.append(Step("page served before login, naming no camera", WEB, lambda c: public_page(c.anonymous, c.url, site, c.host)))
    if not user:  # password login off: see pi_plan
        return steps
    steps += [
        Step(login_check(user), WEB, lambda c: log_in_as(c, site.cameras_for(user, relay.name))),
        Step("standby", CAMERAS, standby, needs=(SSH, login_check(user))),
    ]
    for camera in site.cameras_for(user, relay.name):
        needs = (SSH, login_check(user))
        steps += [
            Step(f"{camera.name}: playlist live and advancing", CAMERAS, when_in_use(advancing(camera)), needs=needs),
            Step(f"{camera.name}: segment decodes as H.264", CAMERAS, when_in_use(decodes(camera)), needs=needs),
        ]
    return steps


def identity_steps(site: Site) -> list[Step]:
    """With identity logins (site.yml login.oidc / login.proxy): the providers answer this host."""
    return [Step(IDENTITY, HOST, on_remote(identity_providers))] if site.login.identity else []


def tls_steps(site: Site) -> list[Step]:
    if not site.web.https:
        return []
    return [Step(TLS, WEB, lambda c: served_certificate_matches(c.pin(), c.host.address, site.web.https_port))]


def playlist_url(context: HostContext, camera: Camera) -> str:
    return urljoin(context.url, f"hls/{camera.name}/index.m3u8")


def refused_before_login(camera: Camera) -> Probe:
    return lambda c: expect_status(c.anonymous, playlist_url(c, camera), 401)


def signalling_refused(name: str) -> Probe:
    return lambda c: refused_without_token(signalling_url(c.url, name), ssl_context_of(c.anonymous))


def log_in_as(context: HostContext, allowed: tuple[Camera, ...]) -> tuple[bool, str]:
    run = context.run
    if run.password is None:
        return False, "not tried: no password given (set PI_STREAM_PASSWORD)"
    return log_in(context.session, context.url, run.user, run.password, allowed)


def capture(camera: Camera) -> Probe:
    return lambda c: capture_state(c.session, c.url, camera, playlist_url(c, camera), c.capture.setdefault(camera.name, {}))


def when_live(camera: Camera, probe: Probe) -> Probe:
    """The probe, if the capture state check found the camera live; a camera waiting for an NVR session is not probed."""

    def checked(context: HostContext) -> tuple[bool, str]:
        status = context.capture.get(camera.name, {})
        if status.get("state") != "live":
            raise NotApplicable(f"not live: {status.get('state')}: {status.get('detail')}")
        return probe(context)

    return checked


def when_in_use(probe: Probe) -> Probe:
    """On a relay: the probe if a Pi pushes its cameras here now; a relay on standby has nothing to serve."""

    def checked(context: HostContext) -> tuple[bool, str]:
        if not context.run.relay_in_use(context.host.name):
            raise NotApplicable("standby: no Pi pushes here now")
        return probe(context)

    return checked


def standby(context: HostContext) -> tuple[bool, str]:
    if context.run.relay_in_use(context.host.name):
        raise NotApplicable("in use: the cameras are checked through this relay")
    return True, "no Pi pushes here now: its cameras are served by the relay in use"


def relay_in_use(context: HostContext) -> tuple[bool, str]:
    used = context.run.relay_of(context.host.name)
    return bool(used), used or "none answers"


def advancing(camera: Camera) -> Probe:
    return lambda c: playlist_advances(c.session, playlist_url(c, camera), c.site, c.run.advance_timeout)


def decodes(camera: Camera) -> Probe:
    return lambda c: segment_decodes(c.session, playlist_url(c, camera), camera)


def snapshot(camera: Camera) -> Probe:
    return lambda c: latest_snapshot(c.session, c.url, camera)


def offer(site: Site, host: Host, camera: Camera) -> Probe:
    relay = f"{site.webrtc.relay_address(host)}:{site.webrtc.relay_port}"
    return lambda c: signalling_offer(signalling_url(c.url, camera.name), media_cookie(c.session, f"/webrtc/{camera.name}/"),
                                      ssl_context_of(c.session), relay)
