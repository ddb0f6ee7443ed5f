"""verify sends a viewer's password, and a camera's token, only over a connection that presents the host's installed
certificate (security review, finding 7): a real TLS server on 127.0.0.1 stands in for a Pi or a relay, once with the
installed certificate and once with another, and records every request that reaches it.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import json
import socketserver
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pi_stream.site import load_site
from pi_stream.verify import Http, PinnedCertificate, ssl_context_of, verify_site
from pi_stream.webrtc_checks import signalling_offer
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site

LOCALHOST = "127.0.0.1"


def make_certificate(directory: Path, name: str, issuer: tuple | None = None) -> tuple:
    """A certificate for 127.0.0.1: self-signed (a CA, as `openssl req -x509` makes), or signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOCALHOST))]), critical=False)
    )
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certificate, key, cert_file, key_file


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Self-signed: the Pi's own and an impostor's. Provided: two leaves from one trusted CA, the site's and another's."""
    directory = tmp_path_factory.mktemp("certs")
    ca = make_certificate(directory, "test-ca")
    made = {name: make_certificate(directory, name) for name in ("self-signed", "self-signed-impostor")}
    made |= {name: make_certificate(directory, name, issuer=(ca[0], ca[1])) for name in ("provided", "provided-impostor")}
    return SimpleNamespace(ca=ca[2], **{name.replace("-", "_"): (cert_file, key_file) for name, (_, _, cert_file, key_file) in made.items()})


class Recorder(http.server.BaseHTTPRequestHandler):
    """A Pi's web server as far as verify's first steps go; every request (and body) is recorded."""

    requests: list

    def do_GET(self):
        self.requests.append(("GET", self.path, b""))
        self.reply(200, b"<script src='hls.light.min.js'></script>", "text/html") if self.path == "/" else self.reply(404, b"", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append(("POST", self.path, body))
        self.reply(200, json.dumps({"cameras": [{"name": "testcam"}]}).encode(), "application/json")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        # HTTPServer.server_bind asks socket.getfqdn(), a reverse DNS lookup that can take seconds (docs/DESIGN.md).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = LOCALHOST, self.server_address[1]

    def handle_error(self, request, client_address):
        pass  # a client that drops the connection after the handshake (a pin that did not match) is expected


@pytest.fixture
def serve():
    """serve(cert_file, key_file) -> (port, recorded requests); the server presents that certificate."""
    servers = []

    def start(cert: tuple[Path, Path], chain: Path | None = None):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if chain is not None:  # a provided certificate is served with its chain, as nginx serves fullchain.pem
            bundle = cert[0].with_suffix(".chain.pem")
            bundle.write_bytes(cert[0].read_bytes() + chain.read_bytes())
            context.load_cert_chain(bundle, cert[1])
        else:
            context.load_cert_chain(cert[0], cert[1])
        recorded: list = []
        handler = type("Handler", (Recorder,), {"requests": recorded})
        server = TlsServer((LOCALHOST, 0), handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], recorded

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class FakeRemote:
    """testinfra's host as the checks before the web ones use it: everything answers, nothing is running; the
    installed certificate is the one given (what SSH, which the host key vouches for, reads on the host)."""

    def __init__(self, installed: str) -> None:
        self.installed = installed

    def run(self, *args):
        return SimpleNamespace(rc=0, stdout="", stderr="")

    def file(self, path):
        return SimpleNamespace(content_string=self.installed, exists=False)

    def service(self, name):
        return SimpleNamespace(is_running=False, is_enabled=False)

    def socket(self, spec):
        return SimpleNamespace(is_listening=False)


def site_served_at(tmp_path: Path, port: int, provided: tuple[Path, Path] | None, relay: bool):
    """A site whose Pi (or relay) is this machine's TLS server; `provided`: web.certificate and its key."""
    web: dict = {"https_port": port, "http_port": 1}
    if provided:
        (tmp_path / "tls").mkdir(parents=True, exist_ok=True)
        for name, path in (("certificate", provided[0]), ("certificate_key", provided[1])):
            (tmp_path / "tls" / path.name).write_bytes(path.read_bytes())
            web[name] = f"tls/{path.name}"
    site = {"name": "home", "web": web, "cameras": [{"name": "testcam", "source": {"type": "testsrc"}}]}
    if relay:
        site |= {"topology": "relay", "relay": {"relays": [{"host": "relay1", "url": "https://cams.example.org"}]}}
        hosts = {"pi1": {"ansible_host": "192.0.2.10"},
                 "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": LOCALHOST}}}}
    else:
        hosts = {"pi1": {"ansible_host": LOCALHOST}}
    return load_site(write_site(tmp_path, site, hosts))


def run_verify(site, installed: str, relay: bool, monkeypatch) -> dict[str, str]:
    """verify's checks of the one host on this machine, {name: detail}, failed ones prefixed with "FAIL ".
    A relay is on standby: its Pi (FakeRemote too) has no relay agent that answers."""
    monkeypatch.setattr("pi_stream.checks.run.testinfra_host", lambda site, host, inventory=None: FakeRemote(installed))
    name = site.relays[0].name if relay else site.hosts[0].name
    result = verify_site(site, {name: {}}, VIEWER, VIEWER_PASSWORD, hosts=[name])
    assert {c.host for c in result.checks} == {name}
    return {c.name: ("" if c.ok else "FAIL ") + c.detail for c in result.checks}


def logins(recorded: list) -> list[bytes]:
    return [body for method, path, body in recorded if method == "POST" and path == "/auth/login"]


CASES = {
    # (installed certificate, the impostor's): a self-signed one, and a provided one from a CA this machine trusts
    # (the impostor's is as valid as the site's: only the pin tells them apart).
    "self-signed": ("self_signed", "self_signed_impostor"),
    "provided": ("provided", "provided_impostor"),
}


@pytest.mark.parametrize("relay", [False, True], ids=["pi", "relay"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_password_goes_only_to_the_installed_certificate(case, relay, certs, serve, tmp_path, monkeypatch):
    installed_name, impostor_name = CASES[case]
    provided = case == "provided"
    if provided:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca))  # the site's CA, trusted here as a public one is
    chain = certs.ca if provided else None
    installed = getattr(certs, installed_name)
    installed_text = installed[0].read_text() + (certs.ca.read_text() if provided else "")  # fullchain.pem

    port, recorded = serve(getattr(certs, impostor_name), chain)
    site = site_served_at(tmp_path / "impostor", port, installed if provided else None, relay)
    checks = run_verify(site, installed_text, relay, monkeypatch)
    assert checks["TLS certificate served"].startswith("FAIL sha256 ") and "differs from the installed one" in checks[
        "TLS certificate served"]
    assert checks[f"login as {VIEWER}"].startswith("FAIL password not sent: the certificate served is not the one installed")
    assert logins(recorded) == [], "the password went to a server without the installed certificate"
    assert recorded == [], "nothing at all goes to it, not even the public page's GET"

    port, recorded = serve(installed, chain)
    site = site_served_at(tmp_path / "genuine", port, installed if provided else None, relay)
    checks = run_verify(site, installed_text, relay, monkeypatch)
    assert not checks["TLS certificate served"].startswith("FAIL"), checks
    assert not checks[f"login as {VIEWER}"].startswith("FAIL"), checks
    assert [json.loads(body) for body in logins(recorded)] == [{"user": VIEWER, "password": VIEWER_PASSWORD}]


def test_a_provided_certificate_must_also_chain_to_a_trusted_ca(certs, serve, tmp_path, monkeypatch):
    """Pinned and served as installed, but from a CA nobody trusts: as browsers would, verify refuses it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.self_signed[0]))  # some other CA than the site's
    port, recorded = serve(certs.provided, certs.ca)
    site = site_served_at(tmp_path, port, certs.provided, relay=False)
    checks = run_verify(site, certs.provided[0].read_text(), False, monkeypatch)
    assert checks[f"login as {VIEWER}"].startswith("FAIL password not sent: TLS: ") and logins(recorded) == []


OFFER = {"command": "offer", "id": 1, "sdp": {"type": "offer", "sdp": "v=0"}, "candidates": [],
         "iceServers": [{"urls": [f"turn:{LOCALHOST}:3478?transport=tcp"]}]}


def signalling_with(cert: tuple[Path, Path], pin: PinnedCertificate) -> tuple[tuple[bool, str], list]:
    """verify's WebRTC offer probe, with a camera's token, at a wss:// server that presents `cert`."""
    import websockets

    cookies: list = []

    def record(connection, request):
        cookies.append(request.headers.get("Cookie"))

    async def handler(ws):
        await ws.recv()
        await ws.send(json.dumps(OFFER))

    async def main():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert[0], cert[1])
        async with websockets.serve(handler, LOCALHOST, 0, ssl=context, process_request=record) as server:
            port = server.sockets[0].getsockname()[1]
            session = Http(pin)
            return await asyncio.to_thread(signalling_offer, f"wss://{LOCALHOST}:{port}/webrtc/barn/", "pi_stream_media=tok",
                                           ssl_context_of(session), f"{LOCALHOST}:3478")

    return asyncio.run(main()), cookies


@pytest.mark.parametrize("case", list(CASES))
def test_the_websocket_probe_sends_its_token_only_to_the_installed_certificate(case, certs):
    installed_name, impostor_name = CASES[case]
    pin = PinnedCertificate(getattr(certs, installed_name)[0].read_text(), provided=case == "provided")
    (ok, detail), cookies = signalling_with(getattr(certs, impostor_name), pin)
    assert not ok and "CERTIFICATE_VERIFY_FAILED" in detail and cookies == [], "the token went to another certificate"
    (ok, detail), cookies = signalling_with(getattr(certs, installed_name), pin)
    assert ok, detail
    assert cookies == ["pi_stream_media=tok"]


def test_no_websocket_context_without_a_certificate_check():
    unchecked = Http()
    unchecked.verify = False
    with pytest.raises(ValueError, match="checks no certificate"):
        ssl_context_of(unchecked)
    careless = ssl.create_default_context()
    careless.check_hostname, careless.verify_mode = False, ssl.CERT_NONE
    ok, detail = signalling_offer("wss://192.0.2.1:9/webrtc/barn/", "pi_stream_media=tok", careless, "-")
    assert not ok and detail.startswith("token not sent")
