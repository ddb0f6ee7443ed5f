"""Prove the appliance works, as a viewer and an administrator would see it.

Host-side checks go through testinfra (over the same SSH settings the
inventory gives Ansible); media checks are real HTTP requests, a playlist
parsed with m3u8 and a segment decoded by ffprobe.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import m3u8
import requests
import testinfra
from requests.adapters import HTTPAdapter

from pi_stream.errors import CommandError, ExitStatus
from pi_stream.proc import run
from pi_stream.render import DEFAULT_PATHS, Bundle
from pi_stream.site import INVENTORY_FILE, Camera, Host, Site
from pi_stream.status import STALE_SECONDS
from pi_stream.updates import judge, read_report
from pi_stream.webrtc_checks import ome_streams, refused_without_token, signalling_offer, streams_settled

HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    host: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def status(self) -> ExitStatus:
        return ExitStatus.OK if self.ok else ExitStatus.VERIFY_FAILED

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


class Checker:
    """Collects checks for one host; an exception inside a check is that check's failure, not verify's."""

    def __init__(self, host: str, result: VerifyResult, on_check: Callable[[Check], None] | None) -> None:
        self.host, self.result, self.on_check = host, result, on_check

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        check = Check(self.host, name, bool(ok), detail)
        self.result.checks.append(check)
        if self.on_check:
            self.on_check(check)
        return check.ok

    def attempt(self, name: str, function: Callable[[], tuple[bool, str]]) -> bool:
        try:
            ok, detail = function()
        # Any error inside a probe is that check failing, never verify crashing.
        except Exception as exc:  # noqa: BLE001
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return self.record(name, ok, detail)


@dataclass(frozen=True)
class PinnedCertificate:
    """The certificate a host must serve: the one installed on it, read over SSH (which the host key vouches for).

    Every connection that may carry a password, a cookie or a token is checked against it, Pis and relays
    alike (a relay's traffic crosses the internet). The check is the exact certificate, not a name: verify
    reaches a host by its inventory address, which the certificate need not name.
    """

    pem: str  # the leaf: the first certificate of the installed file (a provided one may hold its chain)
    provided: bool  # web.certificate: its chain must also lead to a CA this machine trusts

    @classmethod
    def installed(cls, text: str, site: Site) -> PinnedCertificate:
        begin = text.find(ssl.PEM_HEADER)
        end = text.find(ssl.PEM_FOOTER, begin)
        if begin < 0 or end < 0:
            raise ValueError(f"{DEFAULT_PATHS['tls_cert']} on the host holds no PEM certificate: deploy again")
        return cls(text[begin:end + len(ssl.PEM_FOOTER)] + "\n", site.web.cert_file is not None)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.pem)).hexdigest()

    def ssl_context(self) -> ssl.SSLContext:
        """For a WebSocket: this certificate is the only trust anchor (partial chain: a provided leaf is no CA)."""
        context = ssl.create_default_context(cadata=self.pem)  # no system CAs: nothing else is trusted
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = False  # the address verify dials need not be a name in it; the certificate is the check
        return context


class PinnedAdapter(HTTPAdapter):
    """Every connection's certificate must have this sha256 (urllib3 checks it right after the handshake,
    before a byte of the request is sent)."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[override]
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


class Http(requests.Session):
    """GETs with a timeout always, and `verify` that environment CA settings cannot override.

    requests lets REQUESTS_CA_BUNDLE replace a session's own `verify`; passing it per
    request keeps the pinned certificate in charge. With a pin, every HTTPS connection
    must present exactly that certificate.
    """

    def __init__(self, pin: PinnedCertificate | None = None) -> None:
        super().__init__()
        self.pin = pin
        if pin is not None:
            self.mount("https://", PinnedAdapter(pin.sha256))
            # A self-signed certificate is its own CA: the fingerprint is the whole check, so no chain is
            # asked for. A provided one must also chain to a trusted CA, as it must for browsers.
            self.verify = pin.provided

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, **kwargs)


def web_session(site: Site, remote, address: str, checker: Checker) -> Http | None:
    """The session for a host's web server; over HTTPS pinned to the host's installed certificate, after a check
    that it is the one served. None: the installed certificate could not be read (that check says why)."""
    if not site.web.https:
        return Http()
    pins: list[PinnedCertificate] = []

    def served() -> tuple[bool, str]:
        pins.append(PinnedCertificate.installed(remote.file(DEFAULT_PATHS["tls_cert"]).content_string, site))
        return served_certificate_matches(pins[0], address, site.web.https_port)

    checker.attempt("TLS certificate served", served)
    return Http(pins[0]) if pins else None


def testinfra_host(site: Site, host: Host):
    # testinfra's ansible backend runs `ansible-inventory` from PATH: make it this environment's.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    inventory = (site.directory / INVENTORY_FILE).resolve()
    return testinfra.get_host(f"ansible://{host.name}?ansible_inventory={inventory}")


def base_url(site: Site, host: Host) -> str:
    if site.web.https:
        port = "" if site.web.https_port == 443 else f":{site.web.https_port}"
        return f"https://{host.address}{port}/"
    port = "" if site.web.http_port == 80 else f":{site.web.http_port}"
    return f"http://{host.address}{port}/"


def verify_site(
    site: Site,
    bundle: Bundle,
    user: str,
    password: str,
    on_check: Callable[[Check], None] | None = None,
    advance_timeout: float | None = None,
) -> VerifyResult:
    result = VerifyResult()
    for host in site.hosts:
        verify_host(site, host, bundle[host.name], user, password, Checker(host.name, result, on_check), advance_timeout)
    relays_in_use = {relay_in_use(site, host) for host in site.hosts} if site.relays else set()
    for relay in site.relays:
        checker = Checker(relay.name, result, on_check)
        verify_relay(site, relay, bundle[relay.name], user, password, checker, advance_timeout, relay.name in relays_in_use)
    return result


def relay_in_use(site: Site, host: Host) -> str:
    """The relay a Pi of a relay site pushes to now, from its agent's state file ("" if none answers or it cannot be said)."""
    from pi_stream.status import relay_agent_state, relay_ok
    from pi_stream.tunnel import AGENT_STATE

    try:
        state = relay_agent_state(testinfra_host(site, host).run("cat %s", AGENT_STATE), None)
    except RuntimeError:  # testinfra's Ansible backend: host unreachable, which the ssh check reports
        return ""
    return state["active"] if relay_ok(state) else ""


def files_match(remote, files) -> tuple[bool, str]:
    """Every file of the host's bundle is on the host, byte for byte (one command for all: a round trip each was slow)."""
    paths = ["/" + target for target in files]
    listing = remote.run("sha256sum" + " %s" * len(paths), *paths).stdout
    deployed = dict(reversed(line.split(None, 1)) for line in listing.splitlines() if line.strip())
    differing = [path for path, file in zip(paths, files.values(), strict=True) if deployed.get(path) != file.sha256]
    detail = f"{len(files)} files identical to `pi-stream render`"
    return not differing, ("differ: " + ", ".join(differing[:5])) if differing else detail


def tunnel_handshakes(remote, site: Site, peers: tuple[Host, ...]) -> tuple[bool, str]:
    """Each peer of the host's WireGuard link shook hands within the last 3 minutes (WireGuard rekeys every 2)."""
    from pi_stream.tunnel import read_public_keys

    names = {key: name for name, key in read_public_keys(site).items()}
    out = remote.run("wg show pistream latest-handshakes").stdout
    now = time.time()
    ages = {names.get(key, key[:8]): now - int(when) for key, when in (line.split() for line in out.splitlines() if line.strip())}
    stale = [p.name for p in peers if ages.get(p.name) is None or ages[p.name] > 180]
    detail = ", ".join(f"{p.name} {ages[p.name]:.0f} s ago" for p in peers if p.name in ages and p.name not in stale)
    return not stale, detail + (f"; no recent handshake with {', '.join(stale)}" if stale else "")


def verify_host(site, host, files, user, password, checker: Checker, advance_timeout) -> None:
    remote = testinfra_host(site, host)
    if not checker.attempt("ssh reachable", lambda: (remote.run("true").rc == 0, host.address)):
        return

    checker.attempt("deployed files = rendered bundle", lambda: files_match(remote, files))

    services = ["nginx", "fail2ban", "pi-stream-firewall", "pi-stream-auth.socket", "pi-stream-capture", "pi-stream-retention.timer"]
    if site.relays:
        services += ["wg-quick@pistream", "pi-stream-relay"]
    for service in services:
        checker.attempt(f"service {service} active", lambda s=service: service_state(remote, s))

    ports = [site.web.http_port] + ([site.web.https_port] if site.web.https else [])
    for port in ports:
        checker.attempt(
            f"port {port}/tcp listening",
            lambda p=port: (remote.socket(f"tcp://0.0.0.0:{p}").is_listening, "on all addresses"),
        )
    checker.attempt("RTMP on loopback only", lambda: rtmp_loopback_only(remote))
    checker.attempt("HLS segments on tmpfs", lambda: hls_on_tmpfs(remote))
    checker.attempt("firewall table loaded", lambda: firewall_loaded(remote))
    for jail in ("pi-stream-auth", "pi-stream-media"):
        checker.attempt(f"fail2ban jail {jail}", lambda j=jail: jail_active(remote, j))
    checker.attempt("H.264 encoder", lambda: encoder_choice(remote))
    if site.relays:
        checker.attempt("tunnel to every relay", lambda: tunnel_handshakes(remote, site, site.relays))
        checker.attempt("relay in use", lambda: (bool(used := relay_in_use(site, host)), used or "none answers"))
    checker.attempt("security updates", lambda: security_updates(remote, site))
    webrtc = [c.name for c in site.webrtc_cameras_on(host.name)]
    if webrtc:
        checker.attempt("service pi-stream-ome active", lambda: service_state(remote, "pi-stream-ome"))
        relay = site.webrtc.relay_port
        checker.attempt(f"WebRTC relay {relay}/tcp listening", lambda: (remote.socket(f"tcp://0.0.0.0:{relay}").is_listening, "TURN over TCP"))
        checker.attempt("OvenMediaEngine has every WebRTC camera", lambda: streams_settled(lambda: ome_streams(remote), webrtc))

    session = web_session(site, remote, host.address, checker)
    if site.web.https:
        checker.attempt("HTTP/2 " + ("offered" if site.web.http2 else "off (web.http2: false)"), lambda: alpn_choice(host, site))
    if session is None:
        checker.record(f"login as {user}", False, "not tried: no installed certificate to check the connection against")
        return
    probe_media(site, host, session, user, password, checker, advance_timeout)


def verify_relay(site, relay: Host, files, user, password, checker: Checker, advance_timeout, in_use: bool) -> None:
    """A relay: its files and services, its tunnel to every Pi, and, on the relay in use, each camera's HLS through it."""
    remote = testinfra_host(site, relay)
    if not checker.attempt("ssh reachable", lambda: (remote.run("true").rc == 0, relay.address)):
        return
    checker.attempt("deployed files = rendered bundle", lambda: files_match(remote, files))
    for service in ("nginx", "fail2ban", "pi-stream-firewall", "pi-stream-auth.socket", "wg-quick@pistream"):
        checker.attempt(f"service {service} active", lambda s=service: service_state(remote, s))
    checker.attempt("firewall table loaded", lambda: firewall_loaded(remote))
    for jail in ("pi-stream-auth", "pi-stream-media"):
        checker.attempt(f"fail2ban jail {jail}", lambda j=jail: jail_active(remote, j))
    checker.attempt("tunnel to every Pi", lambda: tunnel_handshakes(remote, site, site.hosts))
    session = web_session(site, remote, relay.address, checker)
    if session is None:
        checker.record(f"login as {user}", False, "not tried: no installed certificate to check the connection against")
        return
    probe_relay_media(site, relay, session, user, password, checker, advance_timeout, in_use)


def probe_relay_media(site, relay: Host, session: Http, user, password, checker: Checker, advance_timeout, in_use: bool) -> None:
    url = base_url(site, relay)
    checker.attempt("page served before login, naming no camera", lambda: public_page(session, url, site, relay))
    allowed = site.cameras_for(user, relay.name)
    if not checker.attempt(f"login as {user}", lambda: log_in(session, url, user, password, allowed)):
        return
    if not in_use:
        checker.record("standby", True, "no Pi pushes here now: its cameras are served by the relay in use")
        return
    for camera in allowed:
        playlist = urljoin(url, f"hls/{camera.name}/index.m3u8")
        checker.attempt(f"{camera.name}: playlist live and advancing",
                        lambda p=playlist: playlist_advances(session, p, site, advance_timeout))
        checker.attempt(f"{camera.name}: segment decodes as H.264", lambda p=playlist, c=camera: segment_decodes(session, p, c))
    session.post(urljoin(url, "auth/logout"), json={})


def probe_media(site, host, session, user, password, checker: Checker, advance_timeout) -> None:
    url = base_url(site, host)
    checker.attempt("page served before login, naming no camera", lambda: public_page(session, url, site, host))
    checker.attempt("security headers, no version", lambda: hardened_headers(session, url, site))
    for camera in site.cameras_on(host.name):
        playlist = urljoin(url, f"hls/{camera.name}/index.m3u8")
        checker.attempt(f"{camera.name}: playlist refused before login", lambda p=playlist: expect_status(session, p, 401))
    webrtc = {c.name for c in site.webrtc_cameras_on(host.name)}
    for name in sorted(webrtc):
        checker.attempt(f"{name}: WebRTC signalling refused before login",
                        lambda n=name: refused_without_token(signalling_url(url, n), ssl_context_of(session)))
    allowed = site.cameras_for(user, host.name)
    if not checker.attempt(f"login as {user}", lambda: log_in(session, url, user, password, allowed)):
        return
    for camera in allowed:
        playlist = urljoin(url, f"hls/{camera.name}/index.m3u8")
        status: dict = {}
        state_check = lambda c=camera, p=playlist, out=status: capture_state(session, url, c, p, out)  # noqa: E731
        if not checker.attempt(f"{camera.name}: capture state", state_check):
            continue
        if status.get("state") != "live":
            continue  # waiting for an NVR session, as the site's budget says: reported, not probed
        checker.attempt(
            f"{camera.name}: playlist live and advancing",
            lambda p=playlist: playlist_advances(session, p, site, advance_timeout),
        )
        checker.attempt(f"{camera.name}: segment decodes as H.264", lambda p=playlist, c=camera: segment_decodes(session, p, c))
        checker.attempt(f"{camera.name}: latest snapshot", lambda c=camera: latest_snapshot(session, url, c))
        if camera.name in webrtc:
            relay = f"{site.webrtc.relay_address(host)}:{site.webrtc.relay_port}"
            checker.attempt(f"{camera.name}: WebRTC offer through the relay", lambda c=camera, r=relay: signalling_offer(
                signalling_url(url, c.name), media_cookie(session, f"/webrtc/{c.name}/"), ssl_context_of(session), r))
    session.post(urljoin(url, "auth/logout"), json={})


def signalling_url(url: str, camera: str) -> str:
    return urljoin(url, f"webrtc/{camera}/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)


def media_cookie(session: requests.Session, path: str) -> str:
    """The Cookie header a browser sends to `path`: the camera's token the login set there."""
    tokens = [c.value for c in session.cookies if c.name == "pi_stream_media" and c.path == path]
    return f"pi_stream_media={tokens[0]}" if tokens else ""


def ssl_context_of(session: requests.Session) -> ssl.SSLContext:
    """The session's trust for a WebSocket, which carries the camera's token: the pinned certificate, else the
    CA file the session was given, else this machine's CAs with the name checked. Never no check at all."""
    pin = getattr(session, "pin", None)
    if pin is not None:
        return pin.ssl_context()
    if isinstance(session.verify, str):
        return ssl.create_default_context(cafile=session.verify)
    if session.verify is False:
        raise ValueError("the session checks no certificate: no token goes over a WebSocket without one (pin the host's)")
    return ssl.create_default_context()


# A camera still starting after this long is reported with what it is doing. Starts on one NVR are
# staggered (2 s each by default), so the last of 16 cameras starts about 30 s after the first.
CAPTURE_SETTLE_SECONDS = 60.0


def capture_state(session, url: str, camera: Camera, playlist: str, out: dict) -> tuple[bool, str]:
    """The supervisor's own view of the camera (its status.json, through the viewer's auth).

    Live passes; waiting for an NVR session passes with the reason (the site asked for more cameras
    than the budget); backing off or disabled fails with the source's last error. An on-demand
    camera is opened first, as a player would: the playlist request is what starts it.
    """
    status_url = urljoin(url, f"camera/{camera.name}/status.json")
    deadline = time.monotonic() + CAPTURE_SETTLE_SECONDS
    status: dict = {}
    while time.monotonic() < deadline:
        response = session.get(status_url)
        if response.status_code != 200:
            return False, f"status HTTP {response.status_code}"
        status = response.json()
        if time.time() - status.get("updated", 0) > STALE_SECONDS:
            return False, "status is stale: the capture supervisor is not running (journalctl -u pi-stream-capture)"
        if status["state"] == "live":
            break
        if status["state"] == "waiting":
            out.update(status)
            return True, status["detail"]
        if status["state"] == "idle":
            session.get(playlist)  # someone watching: the supervisor starts it
        time.sleep(1)
    out.update(status)
    if status.get("state") != "live":
        error = f"; last error: {status['last_error']}" if status.get("last_error") else ""
        return False, f"{status.get('state')}: {status.get('detail')}{error}"
    rate = f", {status['fps']:g} fps" if status.get("fps") else ""
    bitrate = f", {status['bitrate_kbps']:g} kbit/s" if status.get("bitrate_kbps") else ""
    return True, f"live, {status.get('codec') or 'codec unknown'}{rate}{bitrate}"


def latest_snapshot(session, url: str, camera: Camera) -> tuple[bool, str]:
    """latest.jpg comes from the live session at the camera's interval: it exists and is a JPEG."""
    snapshot_url = urljoin(url, f"camera/{camera.name}/latest.jpg")
    deadline = time.monotonic() + camera.snapshots.interval_seconds + 20
    response = session.get(snapshot_url)
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(1)
        response = session.get(snapshot_url)
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    ok = response.content[:2] == b"\xff\xd8" and response.headers.get("Content-Type") == "image/jpeg"
    return ok, f"{len(response.content)} bytes, {response.headers.get('Content-Type')}"


def public_page(session, url, site: Site, host: Host) -> tuple[bool, str]:
    response = session.get(url)
    named = [c.name for c in site.served_cameras(host.name) if f"/hls/{c.name}/" in response.text]
    ok = response.status_code == 200 and "hls.light.min.js" in response.text and not named
    return ok, f"HTTP {response.status_code}, {len(response.content)} bytes" + (f"; names {named}" if named else "")


def log_in(session, url, user: str, password: str, allowed) -> tuple[bool, str]:
    """The browser's login: one bcrypt check on the Pi, then a cookie per camera this viewer may watch."""
    started = time.monotonic()
    try:
        response = session.post(urljoin(url, "auth/login"), json={"user": user, "password": password})
    except requests.exceptions.SSLError as exc:
        return False, f"password not sent: {tls_refusal(session, exc)}"
    took = time.monotonic() - started
    if response.status_code != 200:
        hint = {401: "wrong password?", 429: "rate-limited: wait a minute", 503: "login service busy"}.get(response.status_code, "")
        return False, f"HTTP {response.status_code} {hint}".strip()
    listed = [c["name"] for c in response.json().get("cameras", [])]
    expected = [c.name for c in allowed]
    return listed == expected, f"{took:.2f} s; cameras {', '.join(listed) or 'none'}" + (
        "" if listed == expected else f" (expected {', '.join(expected)})"
    )


def service_state(remote, name: str) -> tuple[bool, str]:
    service = remote.service(name)
    running = service.is_running
    return running and service.is_enabled, "running, enabled" if running else "not running"


def rtmp_loopback_only(remote) -> tuple[bool, str]:
    loopback = remote.socket("tcp://127.0.0.1:1935").is_listening
    public = remote.socket("tcp://0.0.0.0:1935").is_listening
    return loopback and not public, "127.0.0.1:1935" if loopback else "not listening"


def hls_on_tmpfs(remote) -> tuple[bool, str]:
    out = remote.run(f"findmnt -n -o FSTYPE -T {DEFAULT_PATHS['hls_dir']}")
    fstype = out.stdout.strip()
    return fstype == "tmpfs", fstype or out.stderr.strip()


REQUIRED_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def hardened_headers(session, url, site: Site) -> tuple[bool, str]:
    headers = session.get(url).headers
    missing = [name for name in REQUIRED_HEADERS if name not in headers]
    if site.web.https and "Strict-Transport-Security" not in headers:
        missing.append("Strict-Transport-Security")
    server = headers.get("Server", "")
    leaks = any(ch.isdigit() for ch in server)
    detail = f"Server: {server or '-'}" + (f"; missing {', '.join(missing)}" if missing else "")
    return not missing and not leaks, detail


def firewall_loaded(remote) -> tuple[bool, str]:
    out = remote.run("nft list table inet pi_stream")
    return out.rc == 0 and "policy drop" in out.stdout, "inbound policy drop" if out.rc == 0 else out.stderr.strip()


def jail_active(remote, jail: str) -> tuple[bool, str]:
    out = remote.run("fail2ban-client status %s", jail)
    banned = next((line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if "Currently banned" in line), "?")
    return out.rc == 0, f"currently banned: {banned}" if out.rc == 0 else out.stderr.strip()


def encoder_choice(remote) -> tuple[bool, str]:
    env = remote.file(DEFAULT_PATHS["encoder_env"])
    if not env.exists:
        return True, "no camera encodes (remux only)"
    values = dict(line.split("=", 1) for line in env.content_string.splitlines() if "=" in line and not line.startswith("#"))
    encoder = values.get("PI_STREAM_ENCODER", "?").strip('"')
    kind = "software, on the CPU" if encoder == "libx264" else "hardware"
    return encoder != "?", f"{encoder} ({kind})"


def security_updates(remote, site: Site) -> tuple[bool, str]:
    """unattended-upgrades doing its job: scheduled, and nothing left pending after a run that saw it (pi_stream.updates)."""
    verdict = judge(read_report(remote), site.updates)
    return verdict.ok, "; ".join([verdict.summary, *verdict.notes])


def alpn_choice(host: Host, site: Site) -> tuple[bool, str]:
    """What a browser's TLS handshake settles on (ALPN): h2 when web.http2 is on, else http/1.1."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the certificate has its own check
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host.address, site.web.https_port), timeout=HTTP_TIMEOUT) as raw, context.wrap_socket(raw) as tls:
        chosen = tls.selected_alpn_protocol() or "none"
    expected = "h2" if site.web.http2 else "http/1.1"
    return chosen == expected, f"ALPN {chosen}" + ("" if chosen == expected else f", expected {expected}")


def served_certificate_matches(pin: PinnedCertificate, address: str, port: int) -> tuple[bool, str]:
    """The certificate served is the installed one (this connection carries nothing; the session's own are pinned)."""
    served = ssl.get_server_certificate((address, port), timeout=HTTP_TIMEOUT)
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest()
    same = fingerprint == pin.sha256
    return same, f"sha256 {fingerprint[:16]}…" + ("" if same else f" differs from the installed one ({pin.sha256[:16]}…)")


def tls_refusal(session: requests.Session, exc: requests.exceptions.SSLError) -> str:
    """Why the connection was refused before anything was sent, in the user's terms."""
    pin = getattr(session, "pin", None)
    if pin is not None and "Fingerprints did not match" in str(exc):
        return (f"the certificate served is not the one installed on the host (sha256 {pin.sha256[:16]}…): "
                "someone else answers at this address, or the host's nginx serves another certificate (deploy again)")
    return f"TLS: {exc}"


def expect_status(session: Http, url: str, status: int) -> tuple[bool, str]:
    response = session.get(url)
    return response.status_code == status, f"HTTP {response.status_code}"


def fetch_playlist(session, url) -> m3u8.M3U8:
    response = session.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")
    content_type = response.headers.get("Content-Type", "")
    if "mpegurl" not in content_type:
        raise RuntimeError(f"Content-Type {content_type!r}, expected application/vnd.apple.mpegurl")
    return m3u8.loads(response.text, uri=url)


def playlist_advances(session, url, site: Site, timeout: float | None) -> tuple[bool, str]:
    """The media sequence must grow: a stale playlist means the camera stopped."""
    timeout = timeout or max(10.0, 4 * site.hls.fragment_seconds + 6)
    deadline = time.monotonic() + 30.0
    first = None
    while first is None or not first.segments:
        try:
            first = fetch_playlist(session, url)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
        if first is None or not first.segments:
            time.sleep(1)
            if time.monotonic() > deadline:
                return False, "no segments within 30 s"
    start = first.media_sequence or 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(site.hls.fragment_seconds)
        current = fetch_playlist(session, url)
        if (current.media_sequence or 0) > start:
            durations = ", ".join(f"{s.duration:.1f}" for s in current.segments)
            return True, f"sequence {start} -> {current.media_sequence}; segments {durations} s"
    return False, f"media sequence stuck at {start} for {timeout:g} s"


def segment_decodes(session, url, camera: Camera) -> tuple[bool, str]:
    playlist = fetch_playlist(session, url)
    if not playlist.segments:
        return False, "playlist has no segments"
    segment_url = playlist.segments[-1].absolute_uri
    response = session.get(segment_url)
    if response.status_code != 200:
        return False, f"segment HTTP {response.status_code}"
    with tempfile.NamedTemporaryFile(suffix=".ts") as handle:
        handle.write(response.content)
        handle.flush()
        try:
            probe = run(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                 "stream=codec_name,width,height", "-of", "json", handle.name],
                timeout=30,
            )
        except CommandError as exc:
            return False, str(exc).splitlines()[-1]
    streams = json.loads(probe.stdout).get("streams", [])
    if not streams:
        return False, "no video stream in the segment"
    stream = streams[0]
    size = f"{stream.get('width')}x{stream.get('height')}"
    expected = f"{camera.width}x{camera.height}"
    ok = stream.get("codec_name") == "h264" and (camera.source.type != "testsrc" or size == expected)
    return ok, f"{stream.get('codec_name')} {size}" + ("" if ok else f" (expected h264 {expected})")

