"""Identity providers for the tests: a real OpenID provider (oidc-provider-mock) and one the tests steer, over TLS.

Used in this process on loopback (tests/configs/test_auth_identity.py) and, run as a program, inside a lab's
client namespace, where the Pis reach it as their identity provider (tests/lab/farm/test_identity.py):

    python -m tests.identity_provider --address 10.213.N.2XX --port 9400 --directory DIR

makes a CA and a certificate for that address (DIR/identity-ca.pem is what a site's login.ca_file names), then
serves oidc-provider-mock, and Cloudflare Access's key path (/cdn-cgi/access/certs) from DIR/jwks.json, read on
every request so a test can rotate its keys; it writes DIR/ready when it listens. Nothing it does looks a name up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

# A Cloudflare Access application's AUD tag, and the viewer the tests' assertions are for by default.
AUDIENCE = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
ALICE = "alice@example.org"
CLOUDFLARE_KEYS_PATH = "/cdn-cgi/access/certs"


def oidc_provider_app():
    """oidc-provider-mock's Flask app (imported here: it pulls in authlib, which warns about its own deprecations)."""
    with warnings.catch_warnings():
        # authlib.deprecate puts an "always" filter of its own first when imported: ours goes in after it, in front of it.
        import authlib.deprecate  # noqa: F401

        warnings.simplefilter("ignore", DeprecationWarning)
        import oidc_provider_mock

        return oidc_provider_mock.app()


def clean_environment() -> dict[str, str]:
    """This process's environment without proxy settings: urllib in a login service started with it would send its
    provider requests through them, and the providers here are on this machine."""
    return {name: value for name, value in os.environ.items() if not name.lower().endswith("_proxy")}


def access_claims(issuer: str, **overrides) -> dict:
    """An assertion as Cloudflare Access signs one: for alice, valid for a few minutes."""
    now = int(time.time())
    return {"iss": issuer, "aud": [AUDIENCE], "email": ALICE, "sub": "9a7e0c3f", "iat": now, "nbf": now,
            "exp": now + 300, "type": "app", **overrides}


# ---- TLS: a CA of the test's own, and a certificate for the provider's address --------------------------


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server: ssl.SSLContext


def make_tls(directory: Path, address: str = "127.0.0.1") -> Tls:
    """A CA and a leaf for IP `address` it signed: the providers serve the leaf, the service trusts the CA (ca_file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pi-stream identity test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "identity-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
    return Tls(ca_file, server)


class QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args) -> None:
        pass


@contextlib.contextmanager
def https_server(app, tls: Tls, address: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """A WSGI app on `address` over TLS; yields its URL. The socket is bound here and handed over as a descriptor:
    werkzeug's own bind would go through HTTPServer.server_bind, which asks the resolver for a name (getfqdn)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = make_server(address, port, app, threaded=True, request_handler=QuietHandler, ssl_context=tls.server,
                         fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        listener.close()


def local_session(tls: Tls) -> requests.Session:
    """The test's own browser towards the providers: the test CA, and no proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_file)
    return session


# ---- the providers ----------------------------------------------------------------------------------


class RecordingApp:
    """A WSGI app wrapped to keep the requests made to its token endpoint (form and Authorization header)."""

    def __init__(self, app) -> None:
        self.app = app
        self.token_requests: list[tuple[dict[str, str], str]] = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.token_requests.append((dict(urllib.parse.parse_qsl(body.decode())), environ.get("HTTP_AUTHORIZATION", "")))
        return self.app(environ, start_response)


@dataclass
class MockProvider:
    url: str
    app: RecordingApp
    session: requests.Session

    def add_user(self, sub: str, claims: dict) -> None:
        answer = self.session.put(f"{self.url}/users/{urllib.parse.quote(sub, safe='')}", json=claims, timeout=10)
        assert answer.status_code == 204, answer.text

    def authorize(self, location: str, sub: str = "", deny: bool = False) -> dict[str, str]:
        """The provider's login form, submitted: the query it sends the browser back with."""
        form = {"action": "deny"} if deny else {"sub": sub}
        answer = self.session.post(location, data=form, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["Location"]).query))


@dataclass
class SigningKeys:
    """A provider's key pair, its JWK as published, and tokens signed with it."""

    kid: str
    private: object
    algorithm: str = "RS256"

    @classmethod
    def rsa(cls, kid: str) -> SigningKeys:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKeys:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    def jwk(self) -> dict:
        algorithm = jwt.algorithms.RSAAlgorithm if self.algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        return {**algorithm.to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, claims: dict, kid: str | None = "") -> str:
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


@dataclass
class HandMadeProvider:
    """A provider the tests steer: discovery, keys (also at Cloudflare Access's path) and a token endpoint that
    answers with whatever ID token the test made. Counts the requests per path."""

    keys: list[SigningKeys]
    url: str = ""
    id_token: str = ""
    auth_methods: list[str] | None = None
    hits: Counter = field(default_factory=Counter)
    token_requests: list[tuple[dict[str, str], str]] = field(default_factory=list)

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.hits[request.path] += 1
        if request.path == "/.well-known/openid-configuration":
            document = {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize", "token_endpoint": f"{self.url}/token",
                        "jwks_uri": f"{self.url}/jwks"}
            if self.auth_methods is not None:
                document["token_endpoint_auth_methods_supported"] = self.auth_methods
            answer = Response(json.dumps(document), content_type="application/json")
        elif request.path in ("/jwks", "/cdn-cgi/access/certs"):
            answer = Response(json.dumps({"keys": [key.jwk() for key in self.keys]}), content_type="application/json")
        elif request.path == "/token" and request.method == "POST":
            self.token_requests.append((dict(request.form), request.headers.get("Authorization", "")))
            answer = Response(json.dumps({"access_token": "opaque", "token_type": "Bearer", "id_token": self.id_token}),
                              content_type="application/json")
        else:
            answer = Response("not found", status=404)
        return answer(environ, start_response)

    def claims(self, **overrides) -> dict:
        """An assertion as Cloudflare Access signs one: for alice, valid for a few minutes."""
        return access_claims(self.url, **overrides)


class LabProvider:
    """What the program serves: oidc-provider-mock, with Cloudflare Access's key path answered from a file."""

    def __init__(self, jwks: Path) -> None:
        self.jwks = jwks
        self.provider = oidc_provider_app()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == CLOUDFLARE_KEYS_PATH:
            keys = self.jwks.read_text(encoding="utf-8") if self.jwks.exists() else '{"keys": []}'
            return Response(keys, content_type="application/json")(environ, start_response)
        return self.provider(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", type=Path, required=True)
    args = parser.parse_args(argv)
    tls = make_tls(args.directory, args.address)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with https_server(LabProvider(args.directory / "jwks.json"), tls, args.address, args.port) as url:
        (args.directory / "ready").write_text(url + "\n", encoding="utf-8")
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
