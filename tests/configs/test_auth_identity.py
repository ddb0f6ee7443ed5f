"""Identity logins on the login service: OpenID Connect against a real provider, and identity-aware proxy assertions.

No nginx and no lab: pi_stream_auth.py from the templates runs under /usr/bin/python3 (Debian's PyJWT and
cryptography, as on the Pi) on a Unix socket with a hand-written access.json, and the tests speak to it as
nginx does (Host, X-Forwarded-Proto, the browser's Cookie header). The providers run here, on 127.0.0.1 over
TLS from a test CA the service trusts through access.json's ca_file:
  - oidc-provider-mock, a real OpenID provider (authlib underneath), for the code flow end to end;
  - a hand-made provider whose keys, ID tokens and answers each test sets, for the tokens a real provider
    would never issue (another audience, expired, another key, a wrong nonce) and for the proxy's assertions.
The key rotation tests run the service's code in this process with a clock of their own: a minute passes at once.
Nothing leaves loopback and nothing is looked up by name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from pi_stream.render import TEMPLATES_DIR
from tests.conftest import wait_until
from tests.configs.tree import UnixHTTPConnection, auth_tool_argv, load_auth_module

from tests.identity_provider import (
    clean_environment,
    ALICE,
    AUDIENCE,
    HandMadeProvider,
    MockProvider,
    RecordingApp,
    SigningKeys,
    Tls,
    https_server,
    local_session,
    make_tls,
    oidc_provider_app,
)

SERVICE = "usr/local/lib/pi-stream/pi_stream_auth.py"
PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}
DORA, STRANGER = "dora@example.org", "stranger@example.org"
CLIENT_ID, CLIENT_SECRET = "pi-stream", "the client secret, never logged"
ASSERTION = "Cf-Access-Jwt-Assertion"
# alice: a password and an identity; bob: a password only; dora: an identity only (no line in the viewers file).
BASE_ACCESS = {
    "cameras": [{"name": "garden", "title": "Garden"}, {"name": "door", "title": "Door"}],
    "access": {"alice": ["garden"], "bob": ["garden", "door"], "dora": ["door"]},
    "dvrs": {"shed": ["dora", "bob"]},
    "session_seconds": 3600,
    "link_seconds": 600,
    "secure_cookies": True,
    "password_login": True,
    "identities": {ALICE: "alice", DORA: "dora"},
}
BROWSER = {"Host": "cam.test", "X-Forwarded-Proto": "https"}
# The mock's ID tokens come through authlib's deprecated get_jwt_config: the mock's business, as above.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("identity-tls"))


@pytest.fixture(scope="module")
def mock_provider(tls) -> Iterator[MockProvider]:
    app = RecordingApp(oidc_provider_app())
    with https_server(app, tls) as url:
        provider = MockProvider(url, app, local_session(tls))
        for email in (ALICE, DORA):
            provider.add_user(email, {"email": email, "email_verified": True})
        yield provider


@pytest.fixture(scope="module")
def hand_made(tls) -> Iterator[HandMadeProvider]:
    provider = HandMadeProvider(keys=[SigningKeys.rsa("current-key"), SigningKeys.ec("ec-key")])
    with https_server(provider, tls) as url:
        provider.url = url
        yield provider


# ---- the login service ---------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key.lower() == name.lower()), "")

    def cookies(self) -> list[tuple[str, str, dict[str, str]]]:
        """(name, value, attributes) of every Set-Cookie, in order."""
        found = []
        for key, value in self.headers:
            if key.lower() == "set-cookie":
                name_value, *attributes = value.split("; ")
                name, _, cookie = name_value.partition("=")
                found.append((name, cookie, dict(attribute.partition("=")[::2] for attribute in attributes)))
        return found

    def cookie(self, name: str, path: str | None = None) -> tuple[str, dict[str, str]] | None:
        return next(((value, attributes) for found, value, attributes in self.cookies()
                     if found == name and (path is None or attributes["Path"] == path)), None)

    def json(self):
        return json.loads(self.body)



class Service:
    """pi_stream_auth.py serve under /usr/bin/python3 on a Unix socket, from a root laid out as the roles install it."""

    def __init__(self, root: Path, access: dict, client_secret: str | None = CLIENT_SECRET) -> None:
        self.root = root
        self.auth = root / "etc/pi-stream/auth"
        self.socket = root / "auth.sock"
        self.journal_file = root / "journal.log"
        self.secret_file = self.auth / "oidc-client-secret"
        self.process: subprocess.Popen | None = None
        (root / SERVICE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TEMPLATES_DIR / SERVICE, root / SERVICE)
        self.auth.mkdir(parents=True, exist_ok=True)
        # Cost 4: these tests are about identities, not bcrypt's speed.
        self.hashes = {user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() for user, password in PASSWORDS.items()}
        (self.auth / "viewers").write_text("".join(f"{user}:{hashed}\n" for user, hashed in self.hashes.items()))
        self.key = secrets.token_bytes(32)
        (self.auth / "token.key").write_text(self.key.hex() + "\n")
        if client_secret is not None:
            self.secret_file.write_text(client_secret + "\n")
            self.secret_file.chmod(0o600)
        self.write_access(access)

    def write_access(self, access: dict) -> None:
        (self.auth / "access.json").write_text(json.dumps(access))

    def argv(self, *args: str) -> list[str]:
        return auth_tool_argv(self.root, "--oidc-client-secret", str(self.secret_file), *args)

    def start(self) -> None:
        self.stop()
        with self.journal_file.open("a") as journal:
            self.process = subprocess.Popen(self.argv("serve", "--listen", str(self.socket)), stderr=journal, env=clean_environment())
        wait_until(self.socket.exists, "the login service's socket", seconds=10, interval=0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        self.socket.unlink(missing_ok=True)

    def tool(self, *args: str) -> str:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30, check=True, env=clean_environment()).stdout

    def journal(self) -> str:
        return self.journal_file.read_text()

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, body: dict | None = None) -> Answer:
        """One request as nginx passes it on (Host and X-Forwarded-Proto of a browser on https://cam.test)."""
        connection = UnixHTTPConnection(self.socket, 30)
        sent = {**BROWSER, "Connection": "close", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=sent)
            answer = connection.getresponse()
            return Answer(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()

    def proxy_login(self, token: str | None, path: str = "/auth/proxy", headers: dict[str, str] | None = None) -> Answer:
        return self.call("POST", path, {**({ASSERTION: token} if token is not None else {}), **(headers or {})}, body={})


@contextlib.contextmanager
def running(root: Path, access: dict, client_secret: str | None = CLIENT_SECRET) -> Iterator[Service]:
    service = Service(root, access, client_secret)
    try:
        service.start()
        yield service
    finally:
        service.stop()


def with_providers(mock: MockProvider | HandMadeProvider, proxy: HandMadeProvider, tls: Tls) -> dict:
    """access.json with OpenID Connect at `mock` and an identity-aware proxy whose keys `proxy` serves."""
    return {
        **BASE_ACCESS,
        "oidc": {"issuer": mock.url, "client_id": CLIENT_ID, "scopes": "openid email", "name": "Example"},
        "proxy": {"issuer": proxy.url, "jwks_uri": f"{proxy.url}/cdn-cgi/access/certs", "audience": AUDIENCE,
                  "header": ASSERTION, "bearer": False},
        "ca_file": str(tls.ca_file),
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory, mock_provider, hand_made, tls) -> Iterator[Service]:
    """OpenID Connect at oidc-provider-mock, the proxy's keys at the hand-made provider."""
    with running(tmp_path_factory.mktemp("identity"), with_providers(mock_provider, hand_made, tls)) as started:
        yield started


@pytest.fixture(scope="module")
def steered(tmp_path_factory, hand_made, tls) -> Iterator[Service]:
    """OpenID Connect at the hand-made provider, whose token endpoint hands out the ID token a test made."""
    with running(tmp_path_factory.mktemp("identity-steered"), with_providers(hand_made, hand_made, tls)) as started:
        yield started


def cookie_header(*pairs: tuple[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in pairs)}


@dataclass
class Started:
    """A browser's /start: the provider's URL it was sent to, the parameters, and the state cookie it got."""

    answer: Answer
    location: str
    params: dict[str, str]
    state_cookie: str


def start(service: Service, path: str = "/auth/oidc/start", host: str = "cam.test") -> Started:
    answer = service.call("GET", path, {"Host": host})
    assert answer.status == 302, answer.body
    location = answer.header("Location")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    return Started(answer, location, params, answer.cookies()[0][1])


def callback(service: Service, query: dict[str, str], state_cookie: str | None, path: str = "/auth/oidc/callback",
             host: str = "cam.test") -> Answer:
    headers = {"Host": host, **(cookie_header(("pi_stream_oidc", state_cookie)) if state_cookie is not None else {})}
    return service.call("GET", f"{path}?{urllib.parse.urlencode(query)}", headers)


def media_signature(key: str, expires: str, user: str, camera: str) -> str:
    """nginx's secure_link check, from the documented formula: base64url(MD5(K + EXPIRES + USER + CAMERA + K))."""
    digest = hashlib.md5(f"{key}{expires}{user}{camera}{key}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def map_keys(nginx_map: str) -> dict[str, str]:
    """"USER/CAMERA" -> key, from `nginx-map`'s output."""
    keys = {}
    for line in nginx_map.splitlines():
        parts = line.split('"')
        if len(parts) == 5 and "/" in parts[1] and not line.lstrip().startswith("map"):
            keys[parts[1]] = parts[3]
    return keys


def nginx_accepts(keys: dict[str, str], token: str, camera: str) -> bool:
    user, expires, signature = token.split("~")
    key = keys.get(f"{user}/{camera}")
    return key is not None and hmac.compare_digest(media_signature(key, expires, user, camera), signature)


# ---- OpenID Connect against a real provider ------------------------------------------------------------


def test_a_code_flow_logs_alice_in_and_her_media_cookie_opens_her_camera_only(service, mock_provider):
    started = start(service)
    params = started.params
    assert started.location.startswith(f"{mock_provider.url}/oauth2/authorize?")
    assert params["response_type"] == "code" and params["client_id"] == CLIENT_ID and params["scope"] == "openid email"
    assert params["redirect_uri"] == "https://cam.test/auth/oidc/callback"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43 and len(params["nonce"]) >= 32
    name, state, attributes = started.answer.cookies()[0]
    assert name == "pi_stream_oidc" and state == params["state"]
    # Lax: the provider's redirect back is cross-site. Sent to the callback only, for the 10 minutes a login may take.
    assert attributes == {"Path": "/auth/oidc/callback", "Max-Age": "600", "HttpOnly": "", "SameSite": "Lax", "Secure": ""}

    returned = mock_provider.authorize(started.location, sub=ALICE)
    answer = callback(service, returned, state)
    assert answer.status == 200, answer.body
    # A page that goes on to "/" by itself: the browser's next request is same-site, so its new Strict cookies go along.
    assert answer.header("Location") == "" and b'<meta http-equiv="refresh" content="0; url=/">' in answer.body
    # The token request: PKCE's verifier is the one whose hash went to the provider, and the client authenticated.
    form, authorization = mock_provider.app.token_requests[-1]
    assert form["code"] == returned["code"] and form["redirect_uri"] == params["redirect_uri"]
    assert base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).decode().rstrip("=") == params["code_challenge"]
    assert base64.b64decode(authorization.removeprefix("Basic ")).decode() == f"{CLIENT_ID}:{urllib.parse.quote(CLIENT_SECRET, safe='')}"

    media = [(attributes["Path"], value) for name, value, attributes in answer.cookies() if name == "pi_stream_media"]
    assert sorted(path for path, _ in media) == ["/camera/garden/", "/hls/garden/"]
    assert answer.cookie("pi_stream_device") is None  # no password was checked: nothing to go first with
    forgotten = {"Path": "/auth/oidc/callback", "Max-Age": "0", "HttpOnly": "", "SameSite": "Lax", "Secure": ""}
    assert answer.cookie("pi_stream_oidc") == ("", forgotten)  # the state is used up: the browser drops its cookie
    keys = map_keys(service.tool("nginx-map"))
    token = media[0][1]
    assert nginx_accepts(keys, token, "garden")
    assert not nginx_accepts(keys, token, "door")  # no key for alice/door: nginx refuses her token there

    session_cookie = answer.cookie("pi_stream_session", "/auth/")[0]
    session = service.call("GET", "/auth/session", cookie_header(("pi_stream_session", session_cookie)))
    assert session.status == 200
    assert session.json()["user"] == "alice"
    assert [camera["name"] for camera in session.json()["cameras"]] == ["garden"]
    assert f"alice logged in as '{ALICE}' (OpenID Connect)" in service.journal()


def test_an_identity_that_is_no_viewer_is_refused(service, mock_provider):
    mock_provider.add_user(STRANGER, {"email": STRANGER, "email_verified": True})
    started = start(service)
    returned = mock_provider.authorize(started.location, sub=STRANGER)
    answer = callback(service, returned, started.state_cookie)
    assert answer.status == 401
    assert answer.header("Content-Type") == "text/html; charset=utf-8" and b"<script" not in answer.body
    assert b"not a viewer here" in answer.body
    assert answer.cookie("pi_stream_session") is None and answer.cookie("pi_stream_media") is None
    journal = service.journal()
    assert f"OpenID Connect login refused for '{STRANGER}': this identity is not a viewer here" in journal
    assert returned["code"] not in journal and CLIENT_SECRET not in journal


def test_an_email_the_provider_does_not_vouch_for_is_refused(service, mock_provider):
    mock_provider.add_user("unverified-alice", {"email": ALICE, "email_verified": False})
    started = start(service)
    answer = callback(service, mock_provider.authorize(started.location, sub="unverified-alice"), started.state_cookie)
    assert answer.status == 401
    assert b"email_verified" in answer.body


def test_a_replayed_state_is_refused(service, mock_provider):
    started = start(service)
    returned = mock_provider.authorize(started.location, sub=ALICE)
    assert callback(service, returned, started.state_cookie).status == 200
    replay = callback(service, returned, started.state_cookie)
    assert replay.status == 401
    assert b"already used" in replay.body
    assert replay.cookie("pi_stream_session") is None


def test_a_callback_for_another_browsers_state_is_refused_and_leaves_that_login_alone(service, mock_provider):
    """Login CSRF: the callback URL of someone else's login, opened in this browser, must not log it in."""
    theirs, mine = start(service), start(service)
    returned = mock_provider.authorize(theirs.location, sub=ALICE)
    crossed = callback(service, returned, mine.state_cookie)
    assert crossed.status == 401
    assert crossed.cookies() == []  # this browser's own login, if one is under way, keeps its state cookie
    assert callback(service, returned, None).status == 401
    assert "OpenID Connect login refused: the login was not started in this browser" in service.journal()
    # Their own browser still finishes: a mismatch does not use up the state.
    assert callback(service, returned, theirs.state_cookie).status == 200


def test_the_provider_saying_no_is_400_not_a_refusal(service, mock_provider):
    started = start(service)
    returned = mock_provider.authorize(started.location, deny=True)
    assert returned["error"] == "access_denied"
    answer = callback(service, returned, started.state_cookie)
    assert answer.status == 400
    assert b"access_denied" in answer.body
    assert callback(service, {"state": started.params["state"]}, started.state_cookie).status == 400  # no code: nothing to check


def test_a_dvr_login_by_openid_connect_sets_that_dvrs_cookie(service, mock_provider):
    started = start(service, "/auth/dvr/shed/oidc/start", host="shed.cam.test")
    assert started.params["redirect_uri"] == "https://shed.cam.test/_pi_stream/auth/oidc/callback"
    assert started.answer.cookies()[0][2]["Path"] == "/_pi_stream/auth/oidc/callback"
    returned = mock_provider.authorize(started.location, sub=DORA)
    answer = callback(service, returned, started.state_cookie, "/auth/dvr/shed/oidc/callback", host="shed.cam.test")
    assert answer.status == 200, answer.body
    value, attributes = answer.cookie("pi_stream_dvr")
    assert attributes["Path"] == "/" and attributes["SameSite"] == "Strict"
    assert answer.cookie("pi_stream_session") is None
    assert service.call("GET", "/auth/dvr/shed/check", cookie_header(("pi_stream_dvr", value))).status == 204


def test_a_state_started_for_the_appliance_does_not_log_into_a_dvr(service, mock_provider):
    started = start(service)
    returned = mock_provider.authorize(started.location, sub=DORA)
    assert callback(service, returned, started.state_cookie, "/auth/dvr/shed/oidc/callback").status == 401
    # alice may watch cameras, but is not on the shed's list.
    started = start(service, "/auth/dvr/shed/oidc/start")
    answer = callback(service, mock_provider.authorize(started.location, sub=ALICE), started.state_cookie, "/auth/dvr/shed/oidc/callback")
    assert answer.status == 401


def test_a_provider_that_cannot_be_reached_is_502(tmp_path, hand_made, tls):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    access = {**with_providers(hand_made, hand_made, tls), "oidc": {"issuer": f"https://127.0.0.1:{nobody}", "client_id": CLIENT_ID}}
    with running(tmp_path, access) as unreachable:
        answer = unreachable.call("GET", "/auth/oidc/start")
        assert answer.status == 502
        assert answer.cookie("pi_stream_oidc") is None
        assert "OpenID Connect login could not start" in unreachable.journal()


# ---- ID tokens a real provider would not issue: the hand-made provider's token endpoint ------------------


def id_token_claims(provider: HandMadeProvider, started: Started, **overrides) -> dict:
    now = int(time.time())
    return {"iss": provider.url, "aud": CLIENT_ID, "sub": "248289761001", "iat": now, "exp": now + 300,
            "nonce": started.params["nonce"], "email": ALICE, "email_verified": True, **overrides}


def login_with(steered: Service, provider: HandMadeProvider, id_token: str, started: Started) -> Answer:
    provider.id_token = id_token
    return callback(steered, {"code": "any-code", "state": started.params["state"]}, started.state_cookie)


def test_a_good_id_token_from_the_steered_provider_passes(steered, hand_made):
    """The baseline for the refusals below: the same provider, a token made the same way, accepted."""
    started = start(steered)
    answer = login_with(steered, hand_made, hand_made.keys[0].sign(id_token_claims(hand_made, started)), started)
    assert answer.status == 200, answer.body
    form, authorization = hand_made.token_requests[-1]
    assert form["grant_type"] == "authorization_code" and "client_secret" not in form and authorization.startswith("Basic ")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-client"}, b"another audience"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, b"expired"),
        ({"iss": "https://accounts.example.net"}, b"another issuer"),
        ({"nonce": "a nonce from another login"}, b"nonce"),
        ({"aud": [CLIENT_ID, "another-client"]}, b"azp"),
        ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, b"azp"),
        ({"email_verified": "true"}, b"email_verified"),
        ({"sub": None}, b"sub"),
    ],
    ids=["audience", "expired", "issuer", "nonce", "several-audiences-without-azp", "azp-of-another-client", "verified-as-text", "no-sub"],
)
def test_an_id_token_that_does_not_pass_is_refused(steered, hand_made, overrides, reason):
    started = start(steered)
    claims = {name: value for name, value in id_token_claims(hand_made, started, **overrides).items() if value is not None}
    answer = login_with(steered, hand_made, hand_made.keys[0].sign(claims), started)
    assert answer.status == 401
    assert reason in answer.body
    assert answer.cookie("pi_stream_session") is None


def test_an_id_token_signed_by_another_key_or_none_is_refused(steered, hand_made):
    impostor = SigningKeys.rsa("current-key")  # the provider's key id, someone else's key
    started = start(steered)
    answer = login_with(steered, hand_made, impostor.sign(id_token_claims(hand_made, started)), started)
    assert answer.status == 401 and b"signature" in answer.body
    started = start(steered)
    unsigned = hs256_or_none(id_token_claims(hand_made, started), None)
    assert login_with(steered, hand_made, unsigned, started).status == 401


def test_a_public_client_sends_its_id_and_no_secret(tmp_path, hand_made, tls):
    with running(tmp_path, with_providers(hand_made, hand_made, tls), client_secret=None) as public:
        started = start(public)
        assert login_with(public, hand_made, hand_made.keys[0].sign(id_token_claims(hand_made, started)), started).status == 200
    form, authorization = hand_made.token_requests[-1]
    assert form["client_id"] == CLIENT_ID and "client_secret" not in form and authorization == ""
    assert form["code_verifier"]


def test_client_secret_post_when_the_provider_offers_only_that(tmp_path, hand_made, tls):
    hand_made.auth_methods = ["client_secret_post", "private_key_jwt"]
    try:
        with running(tmp_path, with_providers(hand_made, hand_made, tls)) as posting:
            started = start(posting)
            assert login_with(posting, hand_made, hand_made.keys[0].sign(id_token_claims(hand_made, started)), started).status == 200
    finally:
        hand_made.auth_methods = None
    form, authorization = hand_made.token_requests[-1]
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == CLIENT_SECRET and authorization == ""


# ---- the identity-aware proxy ------------------------------------------------------------------------


def hs256_or_none(claims: dict, secret: bytes | None) -> str:
    """A token no provider of ours signs: HS256 with `secret` (an attacker's use of a public key), or alg "none"."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = {"alg": "HS256" if secret else "none", "typ": "JWT", "kid": "current-key"}
    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_a_valid_proxy_assertion_logs_in_with_the_password_logins_cookies(service, hand_made):
    answer = service.proxy_login(hand_made.keys[0].sign(hand_made.claims()))
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["user"] == "alice" and [camera["name"] for camera in body["cameras"]] == ["garden"]
    assert {attributes["Path"] for name, _, attributes in answer.cookies() if name == "pi_stream_media"} == {"/hls/garden/", "/camera/garden/"}
    assert answer.cookie("pi_stream_session", "/auth/") is not None
    # Another key of the same set (EC), found by its key id.
    assert service.proxy_login(hand_made.keys[1].sign(hand_made.claims(email=DORA))).json()["user"] == "dora"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": ["another-application"]}, "another audience"),
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"iss": "https://otherteam.cloudflareaccess.com"}, "another issuer"),
        ({"email": STRANGER}, "not a viewer here"),
        ({"email": ALICE, "email_verified": False}, "email_verified"),
        ({"email": None}, "no email"),
        ({"exp": None}, "no 'exp' claim"),
    ],
    ids=["audience", "expired", "issuer", "unknown-email", "unverified", "no-email", "no-exp"],
)
def test_a_proxy_assertion_that_does_not_pass_is_401(service, hand_made, claims, reason):
    made = {name: value for name, value in hand_made.claims(**claims).items() if value is not None}
    answer = service.proxy_login(hand_made.keys[0].sign(made))
    assert answer.status == 401
    assert reason in answer.json()["error"]
    assert answer.cookies() == []


def test_a_proxy_assertion_signed_by_another_key_is_401(service, hand_made):
    pem = hand_made.keys[0].private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = [
        SigningKeys.rsa("current-key").sign(hand_made.claims()),  # the provider's key id, someone else's key
        SigningKeys.rsa("current-key").sign(hand_made.claims(), kid=None),  # no key id, and the set has two keys
        hs256_or_none(hand_made.claims(), pem),  # the public key used as an HMAC secret
        hs256_or_none(hand_made.claims(), None),  # alg "none"
        "not.a.jwt",
    ]
    for token in forged:
        answer = service.proxy_login(token)
        assert answer.status == 401, token
        assert answer.cookies() == []


def test_no_signed_header_is_400_and_unsigned_identity_headers_are_never_read(service):
    # What a proxy might also send, unsigned: a client could write these itself.
    unsigned = {"X-Email": ALICE, "Cf-Access-Authenticated-User-Email": ALICE, "X-Forwarded-Email": ALICE}
    for headers in ({}, unsigned):
        answer = service.proxy_login(None, headers=headers)
        assert answer.status == 400
        assert answer.json() == {"error": "no identity from the proxy"}
        assert answer.cookies() == []
    form = service.call("POST", "/auth/proxy", {ASSERTION: "x", "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415


def test_a_dvr_login_through_the_proxy(service, hand_made):
    answer = service.proxy_login(hand_made.keys[0].sign(hand_made.claims(email=DORA)), "/auth/dvr/shed/proxy")
    assert answer.status == 200, answer.body
    assert answer.json()["user"] == "dora"
    value, attributes = answer.cookie("pi_stream_dvr")
    assert service.call("GET", "/auth/dvr/shed/check", cookie_header(("pi_stream_dvr", value))).status == 204
    assert service.call("GET", "/auth/dvr/barn/check", cookie_header(("pi_stream_dvr", value))).status == 403
    # alice is a viewer, but not on the shed's list.
    assert service.proxy_login(hand_made.keys[0].sign(hand_made.claims()), "/auth/dvr/shed/proxy").status == 401
    assert service.proxy_login(hand_made.keys[0].sign(hand_made.claims()), "/auth/dvr/attic/proxy").status == 404


def test_an_oidc_proxy_passes_the_id_token_as_a_bearer_and_its_keys_come_from_discovery(tmp_path, hand_made, tls):
    """proxy.type oidc (oauth2-proxy --pass-authorization-header): "Authorization: Bearer ID_TOKEN", jwks_uri "" (the issuer's)."""
    access = {**BASE_ACCESS, "ca_file": str(tls.ca_file),
              "proxy": {"issuer": hand_made.url, "jwks_uri": "", "audience": "oauth2-proxy", "header": "Authorization", "bearer": True}}
    discovered = hand_made.hits["/.well-known/openid-configuration"]
    with running(tmp_path, access, client_secret=None) as behind:
        id_token = hand_made.keys[0].sign(hand_made.claims(aud="oauth2-proxy", email_verified=True))
        answer = behind.call("POST", "/auth/proxy", {"Authorization": f"Bearer {id_token}"}, body={})
        assert answer.status == 200, answer.body
        assert answer.json()["user"] == "alice"
        assert hand_made.hits["/.well-known/openid-configuration"] == discovered + 1
        assert behind.call("POST", "/auth/proxy", {"Authorization": f"Basic {id_token}"}, body={}).status == 400
        assert behind.call("POST", "/auth/proxy", {ASSERTION: id_token}, body={}).status == 400  # not the configured header
        unverified = hand_made.keys[0].sign(hand_made.claims(aud="oauth2-proxy", email_verified=False))
        assert behind.call("POST", "/auth/proxy", {"Authorization": f"Bearer {unverified}"}, body={}).status == 401


def test_made_up_key_ids_do_not_make_the_service_fetch_keys_again(service, hand_made):
    assert service.proxy_login(hand_made.keys[0].sign(hand_made.claims())).status == 200  # the keys are fetched and fresh
    fetched = hand_made.hits["/cdn-cgi/access/certs"]
    for _ in range(20):
        assert service.proxy_login(hand_made.keys[0].sign(hand_made.claims(), kid=secrets.token_hex(8))).status == 401
    # At most one refetch a minute: the keys were fetched within it, so none at all.
    assert hand_made.hits["/cdn-cgi/access/certs"] <= fetched + 1


# ---- identity viewers use the rest of the service as password viewers do ------------------------------


def test_session_link_and_logout_work_for_an_identity_only_viewer(service, hand_made):
    login = service.proxy_login(hand_made.keys[0].sign(hand_made.claims(email=DORA)))
    session = cookie_header(("pi_stream_session", login.cookie("pi_stream_session")[0]))
    assert service.call("GET", "/auth/session", session).json()["user"] == "dora"
    link = service.call("POST", "/auth/link", session, body={"camera": "door"})
    assert link.status == 200
    token = link.json()["url"].split("/v/")[1].split("/")[0]
    assert nginx_accepts(map_keys(service.tool("nginx-map")), token, "door")
    assert service.call("POST", "/auth/link", session, body={"camera": "garden"}).status == 403
    assert "/v/dora~" in service.tool("link", "dora", "door")
    logout = service.call("POST", "/auth/logout", session, body={})
    assert logout.status == 200 and logout.cookie("pi_stream_session")[0] == ""


def test_an_identity_only_viewer_has_no_password(service):
    """dora has no line in the viewers file: any password is checked against the dummy hash and fails."""
    for password in ("x", "dora", PASSWORDS["alice"]):
        assert service.call("POST", "/auth/login", body={"user": "dora", "password": password}).status == 401
    assert service.call("POST", "/auth/login", body={"user": "alice", "password": PASSWORDS["alice"]}).status == 200


def test_removing_an_email_revokes_that_viewers_tokens(tmp_path, hand_made, tls):
    access = with_providers(hand_made, hand_made, tls)
    with running(tmp_path, access) as site:
        before = map_keys(site.tool("nginx-map"))
        login = site.proxy_login(hand_made.keys[0].sign(hand_made.claims()))
        media = login.cookie("pi_stream_media", "/hls/garden/")[0]
        session = cookie_header(("pi_stream_session", login.cookie("pi_stream_session")[0]))
        assert nginx_accepts(before, media, "garden")
        # The documented keys: a password-only viewer's stands on the hash alone (the same bytes as before identity
        # logins existed), alice's on her hash and her email.
        bob_key = hmac.new(site.key, "\0".join(("media", "bob", "garden", site.hashes["bob"])).encode(), hashlib.sha256).hexdigest()
        alice_key = hmac.new(site.key, "\0".join(("media", "alice", "garden", site.hashes["alice"], ALICE)).encode(), hashlib.sha256).hexdigest()
        assert before["bob/garden"] == bob_key and before["alice/garden"] == alice_key

        site.write_access({**access, "identities": {DORA: "dora"}})  # the deploy after alice's email left site.yml
        site.start()
        after = map_keys(site.tool("nginx-map"))
        assert after["alice/garden"] != before["alice/garden"]
        assert not nginx_accepts(after, media, "garden")
        assert after["bob/garden"] == before["bob/garden"] and after["dora/door"] == before["dora/door"]
        assert site.call("GET", "/auth/session", session).status == 403
        assert site.proxy_login(hand_made.keys[0].sign(hand_made.claims())).status == 401
        # alice keeps her password.
        assert site.call("POST", "/auth/login", body={"user": "alice", "password": PASSWORDS["alice"]}).status == 200

        site.write_access({**access, "identities": {}})  # dora had her email only: she is gone
        assert "dora/door" not in map_keys(site.tool("nginx-map"))


def test_ways_in_that_are_not_configured_are_404(tmp_path):
    with running(tmp_path, BASE_ACCESS, client_secret=None) as passwords_only:
        assert passwords_only.call("GET", "/auth/oidc/start").status == 404
        assert passwords_only.call("GET", "/auth/oidc/callback?code=x&state=y").status == 404
        assert passwords_only.call("GET", "/auth/dvr/shed/oidc/start").status == 404
        assert passwords_only.proxy_login("a.b.c").status == 404
        assert passwords_only.proxy_login("a.b.c", "/auth/dvr/shed/proxy").status == 404


# ---- in this process: the bcrypt slot, and time passing for the key cache ------------------------------


@pytest.fixture
def auth_module(monkeypatch):
    return load_auth_module(TEMPLATES_DIR / SERVICE, monkeypatch)


def test_password_login_off_is_403_without_bcrypt(auth_module, tmp_path):
    site = Service(tmp_path, {**BASE_ACCESS, "password_login": False}, client_secret=None)
    config = auth_module.Config.load(site.auth / "access.json", site.auth / "viewers", site.auth / "token.key")
    server = auth_module.make_server(config, "127.0.0.1:0")

    class NoBcrypt:
        calls = 0

        def check(self, *args, **kwargs):
            NoBcrypt.calls += 1
            return True

    server.RequestHandlerClass.checker = NoBcrypt()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with requests.Session() as browser:
            browser.trust_env = False
            for path in ("/auth/login", "/auth/dvr/shed/login"):
                answer = browser.post(f"{url}{path}", json={"user": "bob", "password": PASSWORDS["bob"]}, timeout=10)
                assert answer.status_code == 403
                assert answer.json() == {"error": "password login is turned off on this site"}
                assert "Set-Cookie" not in answer.headers
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert NoBcrypt.calls == 0


class Clock:
    """time.monotonic for the service's caches, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rotating(tls) -> Iterator[HandMadeProvider]:
    """A provider of its own: these tests change its keys."""
    provider = HandMadeProvider(keys=[SigningKeys.ec("2026-11")])
    with https_server(provider, tls) as url:
        provider.url = url
        yield provider


def proxy_identity(module, provider: HandMadeProvider, tls: Tls, clock: Clock):
    config = module.Config(
        cameras={"garden": "Garden"}, access={"alice": ("garden",)}, dvrs={}, webrtc=(), session_seconds=3600, link_seconds=600,
        secure_cookies=True, hashes={}, site_key=secrets.token_bytes(32), identities={ALICE: "alice"},
        proxy=module.ProxySettings(issuer=provider.url, jwks_uri=f"{provider.url}/cdn-cgi/access/certs", audience=AUDIENCE,
                                   header=ASSERTION, bearer=False),
        ca_file=str(tls.ca_file),
    )
    return module.IdentityLogins(config, clock=clock)


def test_key_rotation_is_one_refetch_and_made_up_key_ids_one_a_minute(auth_module, rotating, tls):
    clock = Clock()
    identity = proxy_identity(auth_module, rotating, tls, clock)
    allowed = ("alice",)

    def fetches() -> int:
        return rotating.hits["/cdn-cgi/access/certs"]

    old = rotating.keys[0]
    assert identity.proxy_viewer(old.sign(rotating.claims()), allowed) == (ALICE, "alice")
    assert fetches() == 1
    new = SigningKeys.ec("2026-12")
    rotating.keys = [new]  # the provider rotates
    # The set was fetched a moment ago: a key id it lacks does not fetch it again yet.
    with pytest.raises(auth_module.LoginRefused):
        identity.proxy_viewer(new.sign(rotating.claims()), allowed)
    assert fetches() == 1
    clock.now += 61
    assert identity.proxy_viewer(new.sign(rotating.claims()), allowed) == (ALICE, "alice")
    assert fetches() == 2
    with pytest.raises(auth_module.LoginRefused):  # the old key is gone from the set, and from the cache
        identity.proxy_viewer(old.sign(rotating.claims()), allowed)
    # A stranger's made-up key ids: one refetch a minute at most, however many.
    for _ in range(100):
        clock.now += 0.5
        with pytest.raises(auth_module.LoginRefused):
            identity.proxy_viewer(new.sign(rotating.claims(), kid=secrets.token_hex(8)), allowed)
    assert fetches() == 2  # 50 s after the refetch: none yet
    clock.now += 15
    with pytest.raises(auth_module.LoginRefused):
        identity.proxy_viewer(new.sign(rotating.claims(), kid=secrets.token_hex(8)), allowed)
    assert fetches() == 3
    # After an hour the set is fetched again anyway.
    clock.now += 3600
    assert identity.proxy_viewer(new.sign(rotating.claims()), allowed) == (ALICE, "alice")
    assert fetches() == 4


def test_many_threads_on_a_cold_cache_fetch_the_keys_once(auth_module, rotating, tls):
    identity = proxy_identity(auth_module, rotating, tls, Clock())
    token = rotating.keys[0].sign(rotating.claims())
    results: list[object] = []

    def log_in() -> None:
        try:
            results.append(identity.proxy_viewer(token, ("alice",)))
        except (auth_module.LoginRefused, auth_module.ProviderFailed) as error:  # kept for the assert: a thread's would vanish
            results.append(error)

    threads = [threading.Thread(target=log_in) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [(ALICE, "alice")] * 16
    assert rotating.hits["/cdn-cgi/access/certs"] == 1


def test_a_provider_down_keeps_the_keys_it_published_and_is_asked_again_later(auth_module, rotating, tls):
    clock = Clock()
    identity = proxy_identity(auth_module, rotating, tls, clock)
    token = rotating.keys[0].sign(rotating.claims())
    assert identity.proxy_viewer(token, ("alice",))[1] == "alice"
    published, rotating.keys = rotating.keys, []  # the set turns empty: nothing usable in it
    clock.now += 3601
    assert identity.proxy_viewer(token, ("alice",))[1] == "alice"  # the hour-old keys still check signatures
    assert rotating.hits["/cdn-cgi/access/certs"] == 2
    assert identity.proxy_viewer(token, ("alice",))[1] == "alice"
    assert rotating.hits["/cdn-cgi/access/certs"] == 2  # not again at once
    rotating.keys = published
    clock.now += 11
    assert identity.proxy_viewer(token, ("alice",))[1] == "alice"
    assert rotating.hits["/cdn-cgi/access/certs"] == 3


# ---- `providers`: what verify asks of each host ---------------------------------------------------------


def test_providers_fetches_what_a_login_needs_and_names_what_fails(service, tmp_path, hand_made, tls, mock_provider):
    said = service.tool("providers").splitlines()
    assert said[0].startswith(f"OpenID Connect {mock_provider.url}: 1 signing key(s) at {mock_provider.url}/")
    assert said[1] == f"proxy {hand_made.url}: 2 signing key(s) at {hand_made.url}/cdn-cgi/access/certs"
    # The same providers without the site's CA: the host would refuse their certificates, and says so, failing.
    access = {**with_providers(mock_provider, hand_made, tls)}
    del access["ca_file"]
    untrusted = Service(tmp_path, access)
    result = subprocess.run(untrusted.argv("providers"), capture_output=True, text=True, timeout=60, env=clean_environment())
    assert result.returncode == 1, result.stdout
    assert "certificate" in result.stdout.lower() and result.stdout.count("\n") == 2, result.stdout
