"""Checks of a host's web server as a browser meets it: the certificate it serves, ALPN, the public page, its
headers, what is refused before login, and the login itself."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from urllib.parse import urljoin

import requests

from pi_stream.checks.connection import HTTP_TIMEOUT, PinnedCertificate, tls_refusal
from pi_stream.site import Host, Site

REQUIRED_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def served_certificate_matches(pin: PinnedCertificate, address: str, port: int) -> tuple[bool, str]:
    """The certificate served is the installed one (this connection carries nothing; the session's own are pinned)."""
    served = ssl.get_server_certificate((address, port), timeout=HTTP_TIMEOUT)
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest()
    same = fingerprint == pin.sha256
    return same, f"sha256 {fingerprint[:16]}…" + ("" if same else f" differs from the installed one ({pin.sha256[:16]}…)")


def alpn_choice(host: Host, site: Site) -> tuple[bool, str]:
    """What a browser's TLS handshake settles on (ALPN): h2 when web.http2 is on, else http/1.1."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the certificate has its own check
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host.address, site.web.https_port), timeout=HTTP_TIMEOUT) as raw, context.wrap_socket(raw) as tls:
        chosen = tls.selected_alpn_protocol() or "none"
    expected = "h2" if site.web.http2 else "http/1.1"
    return chosen == expected, f"ALPN {chosen}" + ("" if chosen == expected else f", expected {expected}")


def public_page(session, url, site: Site, host: Host) -> tuple[bool, str]:
    response = session.get(url)
    named = [c.name for c in site.served_cameras(host.name) if f"/hls/{c.name}/" in response.text]
    ok = response.status_code == 200 and "hls.light.min.js" in response.text and not named
    return ok, f"HTTP {response.status_code}, {len(response.content)} bytes" + (f"; names {named}" if named else "")


def hardened_headers(session, url, site: Site) -> tuple[bool, str]:
    headers = session.get(url).headers
    missing = [name for name in REQUIRED_HEADERS if name not in headers]
    if site.web.https and "Strict-Transport-Security" not in headers:
        missing.append("Strict-Transport-Security")
    server = headers.get("Server", "")
    leaks = any(ch.isdigit() for ch in server)
    detail = f"Server: {server or '-'}" + (f"; missing {', '.join(missing)}" if missing else "")
    return not missing and not leaks, detail


def expect_status(session, url: str, status: int) -> tuple[bool, str]:
    response = session.get(url)
    return response.status_code == status, f"HTTP {response.status_code}"


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


def signalling_url(url: str, camera: str) -> str:
    return urljoin(url, f"webrtc/{camera}/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
