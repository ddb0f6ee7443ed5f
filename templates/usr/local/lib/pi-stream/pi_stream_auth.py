#!/usr/bin/python3
"""pi-stream's login service and token tool, on the Pi. Installed by pi-stream; do not edit here.

Why it exists: nginx's basic auth checks the password hash on every playlist
and segment request, inside the worker that serves video. A strong hash then
costs every viewer on every request, and a wrong-password loop stalls them all.
Here the slow check (bcrypt) runs once per login, in this process, one at a
time; media requests carry a token nginx checks with one MD5 (secure_link).

Tokens: "USER~EXPIRES~SIGNATURE", SIGNATURE = base64url(MD5(K + EXPIRES + USER
+ CAMERA + K)) without padding, where K is a per-user, per-camera key:
HMAC-SHA256(site key, "media", USER, CAMERA, CREDENTIAL). nginx gets the keys
as a map (`nginx-map`), so a token is accepted only for a camera the user may
watch, and stops working as soon as the user is removed, their password
changes, an identity of theirs is taken away or their camera is (at the next
deploy). The key sits on both sides of the MD5 input: no length extension.
CREDENTIAL is the user's stored hash; for a viewer with identities (emails) it
is the hash (or "" without a password), then "\0" and their sorted emails
joined by "\0". A password-only viewer's is the hash alone, as before identity
logins existed, so their tokens outlive the upgrade.

DVRs (viewer_auth in front of a proxied DVR's web interface): the DVR's own
virtual host has a small login page posting to /auth/dvr/NAME/login, and nginx
asks /auth/dvr/NAME/check (auth_request) before every proxied request. The
cookie is "USER~EXPIRES~HMAC-SHA256(site key, "dvr", NAME, USER, EXPIRES,
CREDENTIAL)": good for that DVR only, checked without bcrypt, and void once the
password or identities change or the viewer leaves the DVR's list
(access.json's "dvrs").

Identity logins (access.json's "identities": email -> viewer): instead of a
password, someone else vouches for the viewer's email address, and the login
ends in exactly the cookies a password login sets.
  OpenID Connect: GET /auth/oidc/start sends the browser to the provider
    (authorization code flow, PKCE S256, state and nonce, the pending login
    kept here in memory for 10 minutes and bound to the browser by a cookie);
    GET /auth/oidc/callback exchanges the code for an ID token and checks it.
  Identity-aware proxy (Cloudflare Access, oauth2-proxy): the proxy signs a JWT
    into a header of every request; POST /auth/proxy checks it.
  /auth/dvr/NAME/oidc/start, .../oidc/callback and .../proxy do the same for a
    DVR's login (its cookie, on the DVR's own host name).
Every token is checked with PyJWT against the provider's published keys
(JWKS, cached; an unknown key id refetches them, at most once a minute):
signature (asymmetric algorithms only), issuer, audience, expiry, and for the
ID token nonce and email_verified. A refusal is 401 and a line on stderr (the
journal) with the reason and the email, never the token, code or secret; a
provider that fails or cannot be reached is 502.

Subcommands:
  serve       the login service (systemd socket activation, or --listen for tests)
  nginx-map   print the nginx map of token keys (root only: it holds secrets)
  link        print a player URL (VLC, ffplay) for USER and CAMERA
  providers   fetch each identity provider's discovery document and keys from this host (verify runs it)

Runs on Debian's python3 (3.11+) with python3-bcrypt; identity logins need
python3-jwt and python3-cryptography too (imported only when a site has them).
Why PyJWT: it checks signatures and claims and parses JWKS, the part that must
not be written by hand. The code flow around it is one redirect and three
HTTPS requests (discovery, token, keys) done with urllib; a framework client
such as authlib's would bring requests and a larger surface for nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import html
import http.client
import http.server
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/pi-stream/auth/access.json")
DEFAULT_VIEWERS = Path("/etc/pi-stream/auth/viewers")
DEFAULT_KEY = Path("/etc/pi-stream/auth/token.key")
# Read only when access.json configures OpenID Connect; absent: a public client (PKCE alone).
DEFAULT_OIDC_SECRET = Path("/etc/pi-stream/auth/oidc-client-secret")

USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
CAMERA_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Cookie names are COOKIE_PREFIX + "_" + kind (media, session, device, dvr). A relay says a prefix of its own
# in access.json: someone reaching a Pi's pages through the relay gets the Pi's cookies on the
# relay's host name too (cookies ignore ports), and the two logins must not overwrite each other's.
COOKIE_PREFIX = "pi_stream"
MEDIA_COOKIE = "media"
# Media cookies are set per camera on each of these paths: live HLS, and the camera's snapshots, recordings and status.
MEDIA_PREFIXES = ("/hls/", "/camera/")
# And on the camera's WebRTC signalling (OvenMediaEngine, behind nginx), for the cameras access.json lists under "webrtc".
WEBRTC_PREFIX = "/webrtc/"
SESSION_COOKIE = "session"
# Set after a successful login and sent back only to /auth/login: a browser that has
# logged in as that viewer before goes ahead of everyone else for the bcrypt slot, so a
# wrong-password flood from many addresses cannot lock its owner out (OWASP's "device
# cookies"). It proves a past login, not the password: the password is still checked.
DEVICE_COOKIE = "device"
DEVICE_SECONDS = 180 * 86400
# A proxied DVR's login page posts here, on the DVR's own host name (dvr-proxy.conf passes it to
# /auth/dvr/NAME/login): its device cookie is sent back to this path only, like the appliance's to /auth/login.
DVR_LOGIN_PATH = "/_pi_stream/auth/login"
# Host-only, on the DVR's own host name: its web pages and its WebSocket ports (cookies ignore the port) send it.
DVR_COOKIE = "dvr"
DVR_ROUTE_RE = re.compile(r"^/auth/dvr/([a-z0-9][a-z0-9_-]{0,31})/(login|check|logout|proxy|oidc/start|oidc/callback)$")
# The provider sends the browser back here; the cookie binding a pending login to its browser is sent to this path only.
OIDC_CALLBACK_PATH = "/auth/oidc/callback"
# A DVR's callback, on the DVR's own host name, beside DVR_LOGIN_PATH: nginx passes it to /auth/dvr/NAME/oidc/callback.
DVR_OIDC_CALLBACK_PATH = "/_pi_stream/auth/oidc/callback"
OIDC_COOKIE = "oidc"
# A pending OpenID Connect login (state -> nonce, PKCE verifier) lives this long, and only so many are kept:
# a flood of /start requests pushes out the oldest instead of growing memory.
PENDING_LOGIN_SECONDS = 600
MAX_PENDING_LOGINS = 256
# Signatures accepted on identity tokens: asymmetric only, so a public key can never be used as an HMAC secret,
# and never "none". A key checks only the algorithms of its own type and curve (key_algorithms).
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
EDDSA_CURVES = ("Ed25519", "Ed448")
IDENTITY_ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA")
# A Pi without a battery-backed clock may be a little off the provider's.
CLOCK_LEEWAY_SECONDS = 60
# Requests to the provider: bounded in time and size, whatever it sends.
PROVIDER_TIMEOUT_SECONDS = 10
MAX_PROVIDER_RESPONSE = 1 << 20
# Discovery documents and key sets are kept this long...
PROVIDER_CACHE_SECONDS = 3600
# ...a token with a key id the set does not have fetches the set again (the provider rotated its keys), but at
# most this often: a stranger's made-up key ids must not make the Pi hammer the provider.
KEY_REFETCH_SECONDS = 60
# After a failed fetch, the next try waits this long (the answers meanwhile: the keys from before, or 502).
FAILED_FETCH_SECONDS = 10
# Far longer than any real ID token or proxy assertion.
MAX_IDENTITY_TOKEN = 16384
MAX_QUERY_FIELDS = 16
# A Host header that can go into the redirect URI as it is: a name or an address, and a port.
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
MAX_BODY = 1024
# One bcrypt check at a time: on a Pi, each takes a core for ~0.5 s. Waiting
# requests queue up to this long, then get 503; nginx's limit_req keeps the
# queue short in the first place.
CHECK_WAIT_SECONDS = 5.0
# At most this many logins wait for the bcrypt slot, and as many again from browsers that logged in
# before (device cookies): a login past that gets 503 at once. A flood from a few addresses, each
# inside nginx's limits, would otherwise hold a thread per connection for CHECK_WAIT_SECONDS.
MAX_WAITING = 4
# Threads serving requests at once, well under the unit's TasksMax=64 (every thread is a task): past
# it a connection gets 503 from the accepting thread. With the bounded queue above, only a flood of
# cheap requests could get here, and nginx's limits stand in front of those.
MAX_THREADS = 32
# A connection nginx opened and never finished is dropped after this, not held by a thread forever.
CONNECTION_SECONDS = 15
# Checked when the user does not exist, so a wrong user name costs as long as a
# wrong password and does not reveal which names exist. bcrypt of a random string.
UNKNOWN_USER_HASH = b"$2b$11$pMNy9lF2vGwPBOo516sQv.Wd3j/GS3D41hVnZkE.IsiJWqNf4g4YO"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def read_client_secret(path: Path | None) -> str | None:
    """The OpenID Connect client secret, or None (a public client) when there is no file or it is empty."""
    if path is None:
        return None
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return secret or None


def token_expiry(token: str) -> int | None:
    """The EXPIRES of a USER~EXPIRES~SIGNATURE token, or None when it is no such number. Bounded and ASCII
    before int(): a cookie of thousands of digits would make int() raise, not refuse."""
    parts = token.split("~")
    expires = parts[1] if len(parts) == 3 else ""
    return int(expires) if expires.isascii() and expires.isdigit() and len(expires) <= 12 else None


def expired(token: str, now: float) -> bool:
    """Whether a token says it has run out: a browser's old cookie, not an attack.
    A forger who writes a past date gains nothing: an expired token never passes."""
    expires = token_expiry(token)
    return expires is not None and expires <= now


@dataclass(frozen=True)
class OidcSettings:
    """access.json's "oidc", plus the client secret (None: a public client, PKCE alone)."""

    issuer: str
    client_id: str
    scopes: str
    client_secret: str | None


@dataclass(frozen=True)
class ProxySettings:
    """access.json's "proxy": whose signed header to believe. jwks_uri "" means the issuer's discovery document's."""

    issuer: str
    jwks_uri: str
    audience: str
    header: str
    bearer: bool


@dataclass(frozen=True)
class Config:
    """access.json (rendered by pi-stream, no secrets) plus the secret files."""

    cameras: dict[str, str]  # name -> title, in page order
    access: dict[str, tuple[str, ...]]  # viewer -> cameras they may watch
    dvrs: dict[str, tuple[str, ...]]  # DVR name -> viewers its login lets through
    webrtc: tuple[str, ...]  # the cameras also offered over WebRTC
    session_seconds: int
    link_seconds: int
    secure_cookies: bool
    hashes: dict[str, str]  # viewer -> bcrypt hash
    site_key: bytes
    cookie_prefix: str = COOKIE_PREFIX
    password_login: bool = True
    identities: dict[str, str] = field(default_factory=dict)  # lower-cased email -> viewer
    oidc: OidcSettings | None = None
    proxy: ProxySettings | None = None
    ca_file: str | None = None  # a CA trusted for the provider's TLS besides the system's

    @classmethod
    def load(cls, config_path: Path, viewers_path: Path, key_path: Path, oidc_secret_path: Path | None = None) -> Config:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        hashes = {}
        for line in viewers_path.read_text(encoding="utf-8").splitlines():
            name, sep, hashed = line.partition(":")
            if sep and USER_RE.fullmatch(name):
                hashes[name] = hashed.strip()
        key = bytes.fromhex(key_path.read_text(encoding="ascii").strip())
        if len(key) < 32:
            raise ValueError(f"{key_path}: the site key must be at least 32 bytes (64 hex digits)")
        # All of these are absent from the access.json of a pi-stream before identity logins: passwords only.
        identities = {str(email).lower(): user for email, user in data.get("identities", {}).items() if USER_RE.fullmatch(str(user))}
        # A viewer exists with a password, an identity or both: one with identities only has no line in the viewers file.
        known = set(hashes) | set(identities.values())
        oidc = data.get("oidc")
        proxy = data.get("proxy")
        return cls(
            cameras={c["name"]: c["title"] for c in data["cameras"]},
            access={user: tuple(cams) for user, cams in data["access"].items() if user in known},
            dvrs={name: tuple(user for user in users if user in known) for name, users in data.get("dvrs", {}).items()},
            webrtc=tuple(data.get("webrtc", ())),  # absent from the access.json of a pi-stream before WebRTC
            session_seconds=int(data["session_seconds"]),
            link_seconds=int(data["link_seconds"]),
            secure_cookies=bool(data["secure_cookies"]),
            hashes=hashes,
            site_key=key,
            cookie_prefix=str(data.get("cookie_prefix", COOKIE_PREFIX)),
            password_login=bool(data.get("password_login", True)),
            identities=identities,
            oidc=OidcSettings(
                issuer=str(oidc["issuer"]),
                client_id=str(oidc["client_id"]),
                scopes=str(oidc.get("scopes", "openid email")),
                client_secret=read_client_secret(oidc_secret_path),
            ) if oidc else None,
            proxy=ProxySettings(
                issuer=str(proxy["issuer"]),
                jwks_uri=str(proxy.get("jwks_uri", "")),
                audience=str(proxy["audience"]),
                header=str(proxy["header"]),
                bearer=bool(proxy.get("bearer", False)),
            ) if proxy else None,
            ca_file=str(data["ca_file"]) if data.get("ca_file") else None,
        )

    def cookie_name(self, kind: str) -> str:
        return f"{self.cookie_prefix}_{kind}"

    def _hmac(self, *parts: str) -> bytes:
        return hmac.new(self.site_key, "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def media_paths(self, camera: str) -> tuple[str, ...]:
        """The paths a camera's media cookie goes to: its HLS and files, and its WebRTC signalling if it has one."""
        prefixes = MEDIA_PREFIXES + ((WEBRTC_PREFIX,) if camera in self.webrtc else ())
        return tuple(f"{prefix}{camera}/" for prefix in prefixes)

    def credential(self, user: str) -> str:
        """What a user's keys and signed tokens stand on: a new password, or an identity taken away, voids them all.
        A password-only viewer's is their stored hash alone, the same bytes as before identity logins existed."""
        emails = sorted(email for email, viewer in self.identities.items() if viewer == user)
        stored = self.hashes.get(user, "")
        return "\0".join((stored, *emails)) if emails else stored

    def media_key(self, user: str, camera: str) -> str:
        return self._hmac("media", user, camera, self.credential(user)).hex()

    def media_token(self, user: str, camera: str, expires: int) -> str:
        key = self.media_key(user, camera)
        digest = hashlib.md5(f"{key}{expires}{user}{camera}{key}".encode(), usedforsecurity=False).digest()
        return f"{user}~{expires}~{b64url(digest)}"

    def signed_token(self, user: str, expires: int, kind: str, *scope: str) -> str:
        """USER~EXPIRES~HMAC. The kind (and scope, e.g. a DVR's name) keeps one kind of cookie from passing for another;
        the credential ends every token of a user whose password or identities change."""
        signature = self._hmac(kind, *scope, user, str(expires), self.credential(user))
        return f"{user}~{expires}~{b64url(signature)}"

    def session_token(self, user: str, expires: int) -> str:
        return self.signed_token(user, expires, "session")

    def device_token(self, user: str, expires: int, *scope: str) -> str:
        """A past login's proof, for the appliance (no scope) or for one DVR's login (scope: "dvr", NAME)."""
        return self.signed_token(user, expires, "device", *scope)

    def dvr_token(self, dvr: str, user: str, expires: int) -> str:
        return self.signed_token(user, expires, "dvr", dvr)

    def token_user(self, token: str, now: float, users: Collection[str], kind: str, *scope: str) -> str | None:
        """The user a signed token belongs to if they are among users, else None (forged, expired, user gone or password changed)."""
        user = token.partition("~")[0]
        expires = token_expiry(token)
        if user not in users or expires is None or expires <= now:
            return None
        expected = self.signed_token(user, expires, kind, *scope)
        return user if hmac.compare_digest(expected.encode(), token.encode()) else None

    def session_user(self, token: str, now: float) -> str | None:
        """The user a session cookie belongs to, or None."""
        return self.token_user(token, now, self.access, "session")

    def dvr_user(self, dvr: str, token: str, now: float) -> str | None:
        """The user a DVR cookie belongs to, if it was issued for this DVR and they are still on its list, else None."""
        return self.token_user(token, now, self.dvrs.get(dvr, ()), "dvr", dvr)

    def nginx_map(self) -> str:
        lines = [
            "# Generated on this host by pi_stream_auth.py nginx-map: per viewer and camera token keys.",
            "# Secret: root only. A pair that is missing here is refused by nginx.",
            'map "$pi_stream_token_user/$pi_stream_camera" $pi_stream_token_key {',
            '    default "";',
        ]
        for user in sorted(self.access):
            for camera in self.access[user]:
                lines.append(f'    "{user}/{camera}" "{self.media_key(user, camera)}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


class Checker:
    """bcrypt, one check at a time, with a bounded wait; known devices go first."""

    def __init__(self) -> None:
        self.state = threading.Condition()
        self.busy = False
        self.priority_waiting = 0
        self.waiting = 0

    def acquire(self, priority: bool, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.state:
            # Known devices have places of their own: a flood from strangers cannot fill them.
            if (self.priority_waiting if priority else self.waiting) >= MAX_WAITING:
                return False
            self.priority_waiting += priority
            self.waiting += not priority
            try:
                while self.busy or (not priority and self.priority_waiting):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.state.wait(remaining)
                self.busy = True
                return True
            finally:
                self.priority_waiting -= priority
                self.waiting -= not priority

    def release(self) -> None:
        with self.state:
            self.busy = False
            self.state.notify_all()

    def check(self, config: Config, user: str, password: str, priority: bool = False, users: Collection[str] | None = None) -> bool | None:
        """True/False, or None when the wait ran out (the caller answers 503). users: who may log in here (default: the viewers).
        Anyone else is checked against a dummy hash, so being off the list costs and answers like a wrong password."""
        import bcrypt  # python3-bcrypt; only the service needs it

        if not self.acquire(priority, CHECK_WAIT_SECONDS):
            return None
        try:
            # A viewer with identities only has no hash: checked against the dummy like a stranger, never as an empty password.
            stored = (config.hashes.get(user) or None) if user in (config.access if users is None else users) else None
            candidate = password.encode("utf-8")[:72]
            matched = bcrypt.checkpw(candidate, (stored or "").encode("ascii") or UNKNOWN_USER_HASH)
            return matched and stored is not None
        finally:
            self.release()


class LoginRefused(Exception):
    """An identity login that does not pass (401, counted by fail2ban). The message is the reason, written here:
    it never quotes the token. email: the address a verified token named, for the journal."""

    def __init__(self, reason: str, email: str = "") -> None:
        super().__init__(reason)
        self.email = email


class ProviderFailed(Exception):
    """The identity provider failed, answered nonsense or could not be reached (502, not counted)."""


def journal(message: str) -> None:
    """A line for the journal (stderr under systemd)."""
    print(f"pi-stream-auth: {message}", file=sys.stderr, flush=True)


def shown(value: object, limit: int = 120) -> str:
    """A value from outside, quoted and ASCII-only for a log line or an error: no newline can forge another line."""
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


def import_jwt():
    """PyJWT (python3-jwt), needed only by sites with identity logins."""
    try:
        import jwt
    except ImportError as error:
        raise SystemExit("pi_stream_auth.py: identity logins need PyJWT: apt install python3-jwt python3-cryptography") from error
    return jwt


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A provider's discovery, keys and token endpoint answer directly: a redirect (to http://, or elsewhere) is a failure."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class ProviderHttp:
    """HTTPS requests to the identity provider: https only, no redirects, bounded in time and size, the system's CAs
    plus the site's own (ca_file). urllib, not requests: Debian's python3 has it, and four requests need nothing more."""

    def __init__(self, ca_file: str | None) -> None:
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirects())

    def request(self, url: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> tuple[int, object]:
        """(HTTP status, the answer's JSON or None). GET, or POST of a form. Raises ProviderFailed when there is no answer."""
        # Also keeps urllib's file: and ftp: handlers away from a URL a discovery document names.
        if urllib.parse.urlsplit(url).scheme != "https":
            raise ProviderFailed(f"{shown(url)} is not an https:// URL")
        data = urllib.parse.urlencode(form).encode("ascii") if form is not None else None
        request = urllib.request.Request(url, data=data, headers={"Accept": "application/json", **(headers or {})})
        try:
            with self.opener.open(request, timeout=PROVIDER_TIMEOUT_SECONDS) as response:
                status, body = response.status, response.read(MAX_PROVIDER_RESPONSE + 1)
        except urllib.error.HTTPError as error:
            # 4xx/5xx (and 3xx, not followed): the status is the answer; the body may say why (the token endpoint's "error").
            status = error.code
            try:
                body = error.read(MAX_PROVIDER_RESPONSE + 1)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                error.close()
        except (OSError, http.client.HTTPException, ValueError) as error:  # URLError, TLS, timeouts: all OSError
            raise ProviderFailed(f"{shown(url)}: {error}") from None
        if len(body) > MAX_PROVIDER_RESPONSE:
            raise ProviderFailed(f"{shown(url)}: an answer over {MAX_PROVIDER_RESPONSE} bytes")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def get_json(self, url: str) -> dict:
        status, document = self.request(url)
        if status != 200 or not isinstance(document, dict):
            raise ProviderFailed(f"{shown(url)}: HTTP {status}" + ("" if isinstance(document, dict) else ", not a JSON object"))
        return document


@dataclass
class Fetched:
    """A cached document: its value (None before the first successful fetch), when it was fetched, when a fetch was last tried."""

    value: object = None
    fetched: float = 0.0
    attempted: float | None = None
    error: str = ""


class RemoteDocuments:
    """Discovery documents and key sets, fetched once per PROVIDER_CACHE_SECONDS and shared by all threads.
    One fetch per URL at a time (the others wait for its result); a refetch asked for within KEY_REFETCH_SECONDS
    of the last fetch, or a retry within FAILED_FETCH_SECONDS of a failure, answers from the cache instead.
    clock: time.monotonic, or a test's."""

    def __init__(self, provider: ProviderHttp, clock: Callable[[], float] = time.monotonic) -> None:
        self.provider, self.clock = provider, clock
        self.lock = threading.Lock()
        self.url_locks: dict[str, threading.Lock] = {}  # one per URL in access.json: a handful
        self.entries: dict[str, Fetched] = {}

    def get(self, url: str, parse: Callable[[dict], object], refetch: bool = False) -> object:
        """parse(the document at url), from the cache when fresh. refetch: the cached value did not have what the
        caller needs (a key id): fetch again if the last fetch is KEY_REFETCH_SECONDS old. Raises ProviderFailed."""
        with self.lock:
            url_lock = self.url_locks.setdefault(url, threading.Lock())
        with url_lock:
            entry = self.entries.setdefault(url, Fetched())
            now = self.clock()
            fresh = entry.value is not None and now - entry.fetched < PROVIDER_CACHE_SECONDS
            if fresh and not refetch:
                return entry.value
            wait = KEY_REFETCH_SECONDS if fresh else FAILED_FETCH_SECONDS
            if entry.attempted is not None and now - entry.attempted < wait:
                if entry.value is not None:
                    return entry.value
                raise ProviderFailed(f"{entry.error} (tried {now - entry.attempted:.0f} s ago)")
            entry.attempted = now
            try:
                value = parse(self.provider.get_json(url))
            except ProviderFailed as error:
                entry.error = str(error)
                journal(f"identity provider: {error}")
                # Keys from an hour ago still check signatures while the provider is down; a refetch for an
                # unknown key id has nothing to answer with.
                if entry.value is not None and not refetch:
                    return entry.value
                raise
            entry.value, entry.fetched, entry.error = value, now, ""
            return value


@dataclass(frozen=True)
class SigningKey:
    kid: str | None
    key: object  # a cryptography public key, from PyJWK
    algorithms: tuple[str, ...]


def key_algorithms(data: dict) -> tuple[str, ...]:
    """The signature algorithms a JWK may check: those of its type (and curve), narrowed to its "alg" when it names one.
    Empty for symmetric keys ("oct"), encryption keys and anything else."""
    kty, curve = data.get("kty"), data.get("crv")
    if kty == "RSA":
        family = RSA_ALGORITHMS
    elif kty == "EC" and curve in EC_ALGORITHMS:
        family = (EC_ALGORITHMS[curve],)
    elif kty == "OKP" and curve in EDDSA_CURVES:
        family = ("EdDSA",)
    else:
        return ()
    alg = data.get("alg")
    return family if alg is None else tuple(a for a in family if a == alg)


def parse_key_set(document: dict) -> tuple[SigningKey, ...]:
    """The usable signing keys of a JWKS; a key PyJWK cannot read is skipped, not fatal (providers publish
    encryption keys and new key types beside the ones we use). Raises ProviderFailed when none is left."""
    jwt = import_jwt()
    keys = []
    entries = document.get("keys")
    for data in entries if isinstance(entries, list) else ():
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or "d" in data:  # "d": private key material
            continue
        algorithms = key_algorithms(data)
        kid = data.get("kid")
        if not algorithms or not isinstance(kid, (str, type(None))):
            continue
        try:
            key = jwt.PyJWK(data, algorithms[0]).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        keys.append(SigningKey(kid, key, algorithms))
    if not keys:
        raise ProviderFailed("the key set has no usable signing key")
    return tuple(keys)


def find_key(keys: tuple[SigningKey, ...], kid: str | None, algorithm: str) -> SigningKey | None:
    """The key a token names. A token without a key id is accepted only from a set of one key (OpenID Connect Core 10.1)."""
    if kid is None:
        return keys[0] if len(keys) == 1 and algorithm in keys[0].algorithms else None
    return next((key for key in keys if key.kid == kid and algorithm in key.algorithms), None)


@dataclass(frozen=True)
class PendingLogin:
    """An OpenID Connect login between /start and /callback."""

    nonce: str
    verifier: str  # PKCE code_verifier
    scope: str  # "" for the appliance, a DVR's name for its login
    redirect_uri: str
    created: float


class PendingLogins:
    """state -> PendingLogin, in memory: a restart forgets them (the viewer starts again). Bounded in number and age;
    a state is removed on first use, so a replayed callback finds nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, PendingLogin] = OrderedDict()

    def add(self, nonce: str, verifier: str, scope: str, redirect_uri: str) -> str:
        state = secrets.token_urlsafe(32)
        with self.lock:
            now = self.clock()
            while self.entries and (len(self.entries) >= MAX_PENDING_LOGINS
                                    or now - next(iter(self.entries.values())).created > PENDING_LOGIN_SECONDS):
                self.entries.popitem(last=False)
            self.entries[state] = PendingLogin(nonce, verifier, scope, redirect_uri, now)
        return state

    def pop(self, state: str) -> PendingLogin | None:
        with self.lock:
            login = self.entries.pop(state, None)
        if login is None or self.clock() - login.created > PENDING_LOGIN_SECONDS:
            return None
        return login


class IdentityLogins:
    """OpenID Connect and identity-aware proxy logins: the provider's documents and keys, pending logins, token checks.
    Shared by all request threads; built once per server (it imports PyJWT and reads ca_file at start, so a site
    with identity logins and without python3-jwt, or with a missing CA file, fails at start, not at a login)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.enabled = config.oidc is not None or config.proxy is not None
        if self.enabled:
            import_jwt()
        self.documents = RemoteDocuments(ProviderHttp(config.ca_file), clock) if self.enabled else None
        self.pending = PendingLogins(clock)

    def discovery(self, issuer: str) -> dict:
        """The issuer's OpenID Provider metadata; its "issuer" must be the configured one exactly (OpenID Connect Discovery 4.3)."""

        def checked(document: dict) -> dict:
            if document.get("issuer") != issuer:
                raise ProviderFailed(f"the discovery document of {shown(issuer)} names issuer {shown(document.get('issuer'))}")
            return document

        return self.documents.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", checked)

    @staticmethod
    def endpoint(document: dict, name: str) -> str:
        url = document.get(name)
        if not isinstance(url, str) or not url.startswith("https://"):
            raise ProviderFailed(f"the discovery document has no https:// {name}")
        return url

    def signing_key(self, jwks_uri: str, kid: str | None, algorithm: str) -> SigningKey:
        keys = self.documents.get(jwks_uri, parse_key_set)
        found = find_key(keys, kid, algorithm)
        if found is None and kid is not None:  # a new key after a rotation, or a made-up kid (throttled)
            found = find_key(self.documents.get(jwks_uri, parse_key_set, refetch=True), kid, algorithm)
        if found is None:
            raise LoginRefused(f"the provider has no {algorithm} key {shown(kid)} for this token")
        return found

    def verify(self, token: str, jwks_uri: str, issuer: str, audience: str, required: tuple[str, ...]) -> dict:
        """The claims of a JWT whose signature, issuer, audience and times PyJWT found good. Raises LoginRefused."""
        jwt = import_jwt()
        if len(token) > MAX_IDENTITY_TOKEN:
            raise LoginRefused("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise LoginRefused("not a JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in IDENTITY_ALGORITHMS:
            raise LoginRefused(f"a token signed with {shown(algorithm)} is not accepted")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise LoginRefused("the token's key id is not a short string")
        key = self.signing_key(jwks_uri, kid, algorithm)
        try:
            return jwt.decode(token, key.key, algorithms=[algorithm], audience=audience, issuer=issuer,
                              leeway=CLOCK_LEEWAY_SECONDS, options={"require": list(required)})
        except jwt.ExpiredSignatureError:
            raise LoginRefused("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise LoginRefused("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise LoginRefused("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise LoginRefused("the token's signature does not match the provider's key") from None
        except jwt.MissingRequiredClaimError as error:
            raise LoginRefused(f"the token has no {shown(error.claim)} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise LoginRefused(f"the token does not pass ({type(error).__name__})") from None

    def viewer(self, claims: dict, allowed: Collection[str]) -> tuple[str, str]:
        """(email, viewer) for the email a verified token vouches for, if that viewer may log in here (allowed)."""
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise LoginRefused("the token names no email address")
        email = email.lower()
        viewer = self.config.identities.get(email)
        if viewer is None or viewer not in allowed:
            raise LoginRefused("this identity is not a viewer here", email=email)
        return email, viewer

    def start_oidc(self, scope: str, redirect_uri: str) -> tuple[str, str]:
        """(state, the provider's authorization URL) for a new login. Raises ProviderFailed."""
        oidc = self.config.oidc
        authorize = self.endpoint(self.discovery(oidc.issuer), "authorization_endpoint")
        nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)  # verifier: 64 characters (RFC 7636: 43-128)
        state = self.pending.add(nonce, verifier, scope, redirect_uri)
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": oidc.client_id,
            "redirect_uri": redirect_uri,
            "scope": oidc.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
            "code_challenge_method": "S256",
        })
        return state, f"{authorize}{'&' if '?' in authorize else '?'}{query}"

    def finish_oidc(self, state: str, code: str, scope: str, issuer_said: str | None, allowed: Collection[str]) -> tuple[str, str]:
        """(email, viewer) from the provider's callback: the pending login, the code exchanged, the ID token checked.
        The caller has matched state against the browser's cookie. Raises LoginRefused or ProviderFailed."""
        oidc = self.config.oidc
        pending = self.pending.pop(state)
        if pending is None:
            raise LoginRefused("unknown, expired or already used login state")
        if pending.scope != scope:
            raise LoginRefused("this login was started for another site")
        # RFC 9207: a provider that says who it is must be ours (a mix-up with another provider is refused).
        if issuer_said is not None and issuer_said != oidc.issuer:
            raise LoginRefused("the answer comes from another issuer")
        document = self.discovery(oidc.issuer)
        id_token = self.exchange_code(document, code, pending)
        claims = self.verify(id_token, self.endpoint(document, "jwks_uri"), oidc.issuer, oidc.client_id,
                             required=("exp", "iat", "iss", "aud", "sub"))
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise LoginRefused("the ID token's nonce is not this login's")
        audiences = [claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"]
        # OpenID Connect Core 3.1.3.7: with several audiences the token must say it was issued to us (azp).
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != oidc.client_id:
            raise LoginRefused("the ID token was issued to another client (azp)")
        if claims.get("email_verified") is not True:
            raise LoginRefused("the provider does not vouch for the email address (email_verified)", email=str(claims.get("email", "")))
        return self.viewer(claims, allowed)

    def exchange_code(self, document: dict, code: str, pending: PendingLogin) -> str:
        """The ID token for an authorization code, from the token endpoint."""
        oidc = self.config.oidc
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier}
        headers = {}
        methods = document.get("token_endpoint_auth_methods_supported")
        if oidc.client_secret is None:
            form["client_id"] = oidc.client_id  # a public client: PKCE is its proof
        elif not isinstance(methods, list) or not methods or "client_secret_basic" in methods:  # the spec's default
            pair = f"{urllib.parse.quote(oidc.client_id, safe='')}:{urllib.parse.quote(oidc.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        elif "client_secret_post" in methods:
            form.update(client_id=oidc.client_id, client_secret=oidc.client_secret)
        else:
            raise ProviderFailed(f"the token endpoint offers neither client_secret_basic nor client_secret_post: {shown(methods)}")
        status, answer = self.documents.provider.request(self.endpoint(document, "token_endpoint"), form, headers)
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("id_token"), str):
            return answer["id_token"]
        error = answer.get("error") if isinstance(answer, dict) else None
        if status in (400, 401) and error == "invalid_grant":  # the code: used already, expired, or someone else's
            raise LoginRefused("the provider did not accept the authorization code")
        # Anything else is the provider's or the site's fault (a wrong client secret): not the viewer's, not counted.
        raise ProviderFailed(f"the token endpoint answered HTTP {status}" + (f", error {shown(error)}" if error else ", no ID token"))

    def proxy_viewer(self, token: str, allowed: Collection[str]) -> tuple[str, str]:
        """(email, viewer) from the identity-aware proxy's signed assertion. Raises LoginRefused or ProviderFailed."""
        proxy = self.config.proxy
        jwks_uri = proxy.jwks_uri or self.endpoint(self.discovery(proxy.issuer), "jwks_uri")
        claims = self.verify(token, jwks_uri, proxy.issuer, proxy.audience, required=("exp", "iss", "aud"))
        # Cloudflare Access says nothing about verification (its identity provider did); an ID token passed on may.
        if "email_verified" in claims and claims["email_verified"] is not True:
            raise LoginRefused("the provider does not vouch for the email address (email_verified)", email=str(claims.get("email", "")))
        return self.viewer(claims, allowed)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pi-stream-auth"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_SECONDS

    # Set on the class by make_server().
    config: Config
    checker: Checker
    identity: IdentityLogins

    def log_message(self, format: str, *args) -> None:
        # nginx logs every request (and fail2ban reads nginx's log); this would only repeat it.
        pass

    def do_GET(self) -> None:
        dvr, action = self.dvr_route()
        if action == "check":
            return self.dvr_check(dvr)
        if self.path == "/auth/session":
            session = self.current_session()
            if session is None:
                return self.refuse(SESSION_COOKIE)
            return self.send_json(200, self.session_body(*session))
        # The provider's callback carries a query (code, state); nginx may pass one on to /start too.
        path = self.path.partition("?")[0]
        oidc = {"/auth/oidc/start": ("", "start"), "/auth/oidc/callback": ("", "callback")}.get(path)
        if oidc is None and action.startswith("oidc/") and dvr in self.config.dvrs:
            oidc = (dvr, action.removeprefix("oidc/"))
        if oidc is not None and self.config.oidc is not None:
            scope, step = oidc
            return self.oidc_start(scope) if step == "start" else self.oidc_callback(scope)
        self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        routes = {"/auth/login": self.login, "/auth/logout": self.logout, "/auth/link": self.link}
        if self.config.proxy is not None:
            routes["/auth/proxy"] = lambda _body: self.proxy_login("")
        route = routes.get(self.path) or self.dvr_post_route()
        if route is None:
            return self.send_json(404, {"error": "not found"})
        # A cross-site form cannot send JSON without a CORS preflight, which nginx does not answer.
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.send_json(415, {"error": "send JSON (Content-Type: application/json)"})
        body = self.read_json()
        if body is None:
            return self.send_json(400, {"error": "the body must be a JSON object of at most 1 KiB"})
        route(body)

    def credentials(self, body: dict) -> tuple[str, str] | None:
        """(user, password) from a login body, or None after answering 400."""
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            self.send_json(400, {"error": "send user and password"})
            return None
        return user, password

    def password_ok(self, user: str, password: str, priority: bool = False, users: Collection[str] | None = None) -> bool:
        """The bcrypt check; on failure it has already answered 401 (or 503 when the slot stayed busy)."""
        matched = self.checker.check(self.config, user, password, priority=priority, users=users)
        if matched is None:
            self.send_json(503, {"error": "busy, try again in a few seconds"}, retry_after=5)
        elif not matched:
            self.send_json(401, {"error": "wrong user name or password"})
        return bool(matched)

    def password_login_off(self) -> bool:
        """Whether the site turned password logins off; if so, answered 403 without touching bcrypt."""
        if not self.config.password_login:
            self.send_json(403, {"error": "password login is turned off on this site"})
        return not self.config.password_login

    def login(self, body: dict) -> None:
        if self.password_login_off():
            return
        found = self.credentials(body)
        if found is None:
            return
        user, password = found
        if not self.password_ok(user, password, priority=self.known_device(user, self.config.access)):
            return
        expires = int(time.time()) + self.config.session_seconds
        cookies = [*self.login_cookies(user, expires), self.device_cookie(user, "/auth/login")]
        self.send_json(200, self.session_body(user, expires), cookies=cookies)

    def login_cookies(self, user: str, expires: int) -> list[str]:
        """The appliance's cookies for a logged-in viewer, whatever the way in: the session, and a media cookie per camera."""
        session = self.config.session_token(user, expires)
        cookies = [self.cookie(self.config.cookie_name(SESSION_COOKIE), session, "/auth/", self.config.session_seconds)]
        for camera in self.config.access[user]:
            token = self.config.media_token(user, camera, expires)
            # The same token on every path: nginx checks it identically for video, snapshots/status and WebRTC signalling.
            for path in self.config.media_paths(camera):
                cookies.append(self.cookie(self.config.cookie_name(MEDIA_COOKIE), token, path, self.config.session_seconds))
        return cookies

    def dvr_cookie(self, dvr: str, user: str, expires: int) -> str:
        return self.cookie(self.config.cookie_name(DVR_COOKIE), self.config.dvr_token(dvr, user, expires), "/", self.config.session_seconds)

    def allowed(self, dvr: str) -> Collection[str]:
        """Who may log in here: the viewers for the appliance (dvr ""), that DVR's list for a DVR."""
        return self.config.dvrs[dvr] if dvr else self.config.access

    def oidc_start(self, dvr: str) -> None:
        """Off to the provider: a pending login, its state in a cookie for the callback path only, 302 to the provider."""
        host = self.headers.get("Host", "")
        if not HOST_RE.fullmatch(host):
            return self.send_page(400, "Login failed", "This request has no usable Host header.")
        callback = DVR_OIDC_CALLBACK_PATH if dvr else OIDC_CALLBACK_PATH
        try:
            state, url = self.identity.start_oidc(dvr, f"{self.scheme()}://{host}{callback}")
        except ProviderFailed as error:
            journal(f"OpenID Connect login{self.scope_label(dvr)} could not start: {error}")
            return self.send_page(502, "Login failed", "The identity provider cannot be reached. Try again later.")
        self.send_redirect(302, url, [self.state_cookie(state, callback, PENDING_LOGIN_SECONDS)])

    def oidc_callback(self, dvr: str) -> None:
        """Back from the provider: the state (single use, this browser's), the code exchanged, the ID token checked,
        then the cookies a password login sets and a page that goes on to "/"."""
        callback = DVR_OIDC_CALLBACK_PATH if dvr else OIDC_CALLBACK_PATH
        forget_state = self.state_cookie("", callback, 0)
        try:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return self.send_page(400, "Login failed", "Too many query parameters.", [forget_state])
        state, code, error = (query.get(name, [""])[0] for name in ("state", "code", "error"))
        if error:  # the viewer said no at the provider, or the provider would not log them in
            journal(f"OpenID Connect login{self.scope_label(dvr)}: the provider answered error={shown(error)}")
            return self.send_page(400, "Login failed", f"The identity provider did not log you in ({error[:100]}).", [forget_state])
        if not state or not code:
            return self.send_page(400, "Login failed", "Nothing to check: start the login again.", [forget_state])
        sent = self.cookies().get(self.config.cookie_name(OIDC_COOKIE), "")
        # Login CSRF: a callback URL from someone else's login, opened in this browser, must not log it in as them.
        # The browser's own state cookie stays: a login of its own may be under way.
        if not sent or not hmac.compare_digest(sent.encode(), state.encode()):
            return self.identity_refused("OpenID Connect", dvr, LoginRefused("the login was not started in this browser"))
        try:
            email, user = self.identity.finish_oidc(state, code, dvr, query.get("iss", [None])[0], self.allowed(dvr))
        except LoginRefused as refused:
            return self.identity_refused("OpenID Connect", dvr, refused, [forget_state])
        except ProviderFailed as failed:
            journal(f"OpenID Connect login{self.scope_label(dvr)} failed: {failed}")
            return self.send_page(502, "Login failed", "The identity provider failed. Try again later.", [forget_state])
        journal(f"{user} logged in{self.scope_label(dvr)} as {shown(email)} (OpenID Connect)")
        expires = int(time.time()) + self.config.session_seconds
        cookies = [self.dvr_cookie(dvr, user, expires)] if dvr else self.login_cookies(user, expires)
        # A page that moves on by itself, not a 303: the browser came here through the provider's cross-site redirect,
        # and a redirect would keep that chain cross-site, so "/" would come without the SameSite=Strict cookies just
        # set (harmless for the player page, which is public; a DVR's "/" sits behind its cookie). This page's own
        # navigation is same-site.
        self.send_page(200, "Logged in", f"Logged in as {user}.", [*cookies, forget_state], refresh="/")

    def proxy_login(self, dvr: str) -> None:
        """The identity-aware proxy's signed header, checked: 200 with the cookies and body of a password login."""
        proxy = self.config.proxy
        token = self.headers.get(proxy.header, "").strip()
        if proxy.bearer:
            scheme, _, bearer_token = token.partition(" ")
            token = bearer_token.strip() if scheme.lower() == "bearer" else ""
        if not token:  # nothing to check (the proxy is not in front, or let this request through without a login): not counted
            return self.send_json(400, {"error": "no identity from the proxy"})
        try:
            email, user = self.identity.proxy_viewer(token, self.allowed(dvr))
        except LoginRefused as refused:
            return self.identity_refused("proxy", dvr, refused)
        except ProviderFailed as failed:
            journal(f"proxy login{self.scope_label(dvr)} failed: {failed}")
            return self.send_json(502, {"error": "the identity provider cannot be reached"})
        journal(f"{user} logged in{self.scope_label(dvr)} as {shown(email)} (identity-aware proxy)")
        expires = int(time.time()) + self.config.session_seconds
        if dvr:
            return self.send_json(200, {"user": user, "expires": expires}, cookies=[self.dvr_cookie(dvr, user, expires)])
        self.send_json(200, self.session_body(user, expires), cookies=self.login_cookies(user, expires))

    def identity_refused(self, how: str, dvr: str, refused: LoginRefused, cookies: list[str] = ()) -> None:
        """401 (nginx logs it for fail2ban) and the reason in the journal: a page for the browser's callback, JSON for the proxy's POST."""
        who = f" for {shown(refused.email)}" if refused.email else ""
        journal(f"{how} login{self.scope_label(dvr)} refused{who}: {refused}")
        if self.command == "GET":
            return self.send_page(401, "Login refused", str(refused), cookies)
        self.send_json(401, {"error": f"login refused: {refused}"}, cookies=cookies)

    @staticmethod
    def scope_label(dvr: str) -> str:
        return f" to DVR {dvr}" if dvr else ""

    def scheme(self) -> str:
        """The scheme the browser used: nginx says so (X-Forwarded-Proto); anything else is http."""
        return "https" if self.headers.get("X-Forwarded-Proto") == "https" else "http"

    def state_cookie(self, state: str, path: str, max_age: int) -> str:
        # Lax, not Strict: the provider's redirect back is a cross-site navigation, and a Strict cookie would stay behind.
        return self.cookie(self.config.cookie_name(OIDC_COOKIE), state, path, max_age, same_site="Lax")

    def logout(self, _body: dict) -> None:
        media = self.config.cookie_name(MEDIA_COOKIE)
        cookies = [self.cookie(self.config.cookie_name(SESSION_COOKIE), "", "/auth/", 0)]
        cookies += [self.cookie(media, "", f"{prefix}{camera}/", 0) for camera in self.config.cameras for prefix in MEDIA_PREFIXES]
        # /webrtc/ for every camera, not only today's WebRTC ones: a camera taken off the list since the login
        # keeps its cookie otherwise, and it would open the signalling again if the camera came back.
        cookies += [self.cookie(media, "", f"{WEBRTC_PREFIX}{camera}/", 0) for camera in self.config.cameras]
        self.send_json(200, {"logged_out": True}, cookies=cookies)

    def dvr_route(self) -> tuple[str, str]:
        """(DVR name, action) for /auth/dvr/NAME/ACTION, else ("", ""). A query string is ignored: nginx may pass one on."""
        match = DVR_ROUTE_RE.fullmatch(self.path.partition("?")[0])
        return (match.group(1), match.group(2)) if match else ("", "")

    def dvr_post_route(self) -> Callable[[dict], None] | None:
        """The handler for a DVR's login or logout (or proxy login, when configured); None (404) for any other path
        and for a DVR that is not configured."""
        dvr, action = self.dvr_route()
        handlers = {"login": self.dvr_login, "logout": self.dvr_logout}
        if self.config.proxy is not None:
            handlers["proxy"] = lambda name, _body: self.proxy_login(name)
        handler = handlers.get(action)
        if handler is None or dvr not in self.config.dvrs:
            return None
        return lambda body: handler(dvr, body)

    def dvr_login(self, dvr: str, body: dict) -> None:
        if self.password_login_off():
            return
        found = self.credentials(body)
        if found is None:
            return
        user, password = found
        allowed = self.config.dvrs[dvr]
        # Off the DVR's list is checked like an unknown user: the same bcrypt cost and the same 401 as a wrong password.
        if not self.password_ok(user, password, priority=self.known_device(user, allowed, "dvr", dvr), users=allowed):
            return
        expires = int(time.time()) + self.config.session_seconds
        cookies = [self.dvr_cookie(dvr, user, expires), self.device_cookie(user, DVR_LOGIN_PATH, "dvr", dvr)]
        self.send_json(200, {"user": user, "expires": expires}, cookies=cookies)

    def known_device(self, user: str, users: Collection[str], *scope: str) -> bool:
        """Whether this browser logged in here as `user` before (its device cookie): it goes first for the bcrypt slot."""
        device = self.cookies().get(self.config.cookie_name(DEVICE_COOKIE), "")
        return bool(device) and self.config.token_user(device, time.time(), users, "device", *scope) == user

    def device_cookie(self, user: str, path: str, *scope: str) -> str:
        expires = int(time.time()) + DEVICE_SECONDS
        return self.cookie(self.config.cookie_name(DEVICE_COOKIE), self.config.device_token(user, expires, *scope), path, DEVICE_SECONDS)

    def dvr_logout(self, _dvr: str, _body: dict) -> None:
        self.send_json(200, {"logged_out": True}, cookies=[self.cookie(self.config.cookie_name(DVR_COOKIE), "", "/", 0)])

    def dvr_check(self, dvr: str) -> None:
        """nginx's auth_request, on every proxied DVR request: an HMAC, no bcrypt. Only 2xx/401/403 are answers
        auth_request understands (anything else becomes a 500), so an unknown DVR is refused like a bad cookie."""
        token = self.cookies().get(self.config.cookie_name(DVR_COOKIE), "")
        if not token or self.config.dvr_user(dvr, token, time.time()) is None:
            return self.refuse(DVR_COOKIE)
        self.send_response(204)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def link(self, body: dict) -> None:
        session = self.current_session()
        if session is None:
            return self.refuse(SESSION_COOKIE)
        user = session[0]
        camera = body.get("camera")
        if not isinstance(camera, str) or camera not in self.config.access[user]:
            return self.send_json(403, {"error": "no such camera for this viewer"})
        expires = int(time.time()) + self.config.link_seconds
        token = self.config.media_token(user, camera, expires)
        host = self.headers.get("Host", "")
        self.send_json(200, {"url": f"{self.scheme()}://{host}/v/{token}/{camera}/index.m3u8", "expires": expires})

    def session_body(self, user: str, expires: int) -> dict:
        cameras = [self.camera_entry(name) for name in self.config.cameras if name in self.config.access[user]]
        return {"user": user, "cameras": cameras, "expires": expires}

    def camera_entry(self, name: str) -> dict:
        """One camera as the page plays it: HLS always, WebRTC signalling too (the page tries it first) if offered."""
        entry = {"name": name, "title": self.config.cameras[name], "playlist": f"/hls/{name}/index.m3u8"}
        if name in self.config.webrtc:
            entry["webrtc"] = f"{WEBRTC_PREFIX}{name}/"
        return entry

    def refuse(self, kind: str) -> None:
        """401 without the cookie or with an expired one (log in again); 403 when one is there and does not pass
        (forged, its viewer gone or their password changed): nginx writes those to the auth log for fail2ban."""
        token = self.cookies().get(self.config.cookie_name(kind), "")
        if token and not expired(token, time.time()):
            return self.send_json(403, {"error": "this login is not valid (any more): log in again"})
        self.send_json(401, {"error": "not logged in"})

    def current_session(self) -> tuple[str, int] | None:
        """(user, expires) of a valid session cookie, else None."""
        token = self.cookies().get(self.config.cookie_name(SESSION_COOKIE), "")
        user = self.config.session_user(token, time.time()) if token else None
        return (user, int(token.split("~")[1])) if user else None

    def cookies(self) -> dict[str, str]:
        found = {}
        for header in self.headers.get_all("Cookie") or []:
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                found.setdefault(name, value)
        return found

    def cookie(self, name: str, value: str, path: str, max_age: int, same_site: str = "Strict") -> str:
        secure = "; Secure" if self.config.secure_cookies else ""
        return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"

    def read_json(self) -> dict | None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            return None
        try:
            data = json.loads(self.rfile.read(int(length)) or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def send_redirect(self, status: int, location: str, cookies: list[str]) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()

    def send_page(self, status: int, title: str, message: str, cookies: list[str] = (), refresh: str = "") -> None:
        """A small page for the browser at the end of an identity login: no script, nothing loaded; `refresh`: where it
        goes on by itself (a meta refresh, which the page's Content-Security-Policy leaves alone)."""
        head = f'<meta http-equiv="refresh" content="0; url={html.escape(refresh)}">' if refresh else ""
        link = html.escape(refresh) if refresh else "/"
        payload = PAGE.format(title=html.escape(title), message=html.escape(message), head=head, link=link,
                              link_text="Continue" if refresh else "Back to the login page").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'none'")
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(payload)

    def send_json(self, status: int, body: dict, cookies: list[str] = (), retry_after: int | None = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if retry_after:
            self.send_header("Retry-After", str(retry_after))
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(payload)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{head}<title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>{message}</p>
<p><a href="{link}">{link_text}</a></p>
</body>
</html>
"""

BUSY_BODY = json.dumps({"error": "busy, try again in a few seconds"}).encode("utf-8")
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BUSY_BODY)}\r\n".encode("ascii")
    + b"Cache-Control: no-store\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
    + BUSY_BODY
)


class BoundedThreads(socketserver.ThreadingMixIn):
    """A thread per connection, as ThreadingMixIn, but at most MAX_THREADS at once: past that the accepting
    thread answers 503 itself. Running out of threads must cost a flood a 503, never a logged-in viewer a 500."""

    daemon_threads = True
    # No list of finished threads kept for server_close() to join: daemon threads, and a flood would grow it.
    block_on_close = False
    # --listen's own socket: a backlog like the one systemd gives the unit's socket (SOMAXCONN), not
    # socketserver's 5, so a burst waits in the queue for a thread instead of being refused at connect.
    request_queue_size = 4096

    def __init__(self, *args, **kwargs) -> None:
        self.thread_slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self.thread_slots.acquire(blocking=False):
            self.refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # "can't start new thread": the system's limit came before ours
            self.thread_slots.release()
            self.refuse_busy(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.thread_slots.release()

    def refuse_busy(self, request) -> None:
        try:
            # Read what nginx sent (it is all there: a small request on a local socket) so closing does not reset it.
            request.settimeout(0.2)
            request.recv(MAX_BODY * 8)
            request.sendall(BUSY_RESPONSE)
        except OSError:
            pass  # nginx gave up on this connection already
        finally:
            self.shutdown_request(request)


class UnixHTTPServer(BoundedThreads, socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = super().get_request()
        return request, ("nginx", 0)  # BaseHTTPRequestHandler formats client_address[0]


class TCPHTTPServer(BoundedThreads, http.server.HTTPServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks the address up in DNS (getfqdn); a manual run on a port needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def make_server(config: Config, listen: str | None) -> socketserver.BaseServer:
    handler = type("BoundHandler", (Handler,), {"config": config, "checker": Checker(), "identity": IdentityLogins(config)})
    if listen and listen.startswith("/"):  # tests: a Unix socket path, as nginx expects
        Path(listen).unlink(missing_ok=True)
        server = UnixHTTPServer(listen, handler)
        os.chmod(listen, 0o666)
        return server
    if listen:  # manual runs: HOST:PORT
        host, _, port = listen.rpartition(":")
        return TCPHTTPServer((host, int(port)), handler)
    # systemd socket activation (pi-stream-auth.socket): the listening socket is fd 3.
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        raise SystemExit("pi_stream_auth.py serve: no socket from systemd; start pi-stream-auth.socket, or pass --listen HOST:PORT")
    server = UnixHTTPServer("", handler, bind_and_activate=False)
    server.socket = socket.socket(fileno=3)
    return server


def load_config(args: argparse.Namespace) -> Config:
    # Under systemd, LoadCredential= hands the secrets over in a private directory.
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    viewers = Path(credentials) / "viewers" if credentials and args.viewers is None else args.viewers or DEFAULT_VIEWERS
    key = Path(credentials) / "token.key" if credentials and args.key is None else args.key or DEFAULT_KEY
    if credentials and args.oidc_client_secret is None:
        oidc_secret = Path(credentials) / "oidc-client-secret"
    else:
        oidc_secret = args.oidc_client_secret or DEFAULT_OIDC_SECRET
    return Config.load(args.config, viewers, key, oidc_secret)


def check_providers(config: Config) -> int:
    """Fetch what a login would (the discovery document, the signing keys), from this host, with its CA and network:
    `pi-stream verify` runs this, so a wrong issuer, audience host or CA shows at deploy time, not at a family
    member's first sign-in. One line per provider; 1 when one fails."""
    identity = IdentityLogins(config)
    if not identity.enabled:
        print("no identity logins on this site")
        return 0
    failed = False
    ways = [("OpenID Connect", config.oidc.issuer, "")] if config.oidc else []
    ways += [("proxy", config.proxy.issuer, config.proxy.jwks_uri)] if config.proxy else []
    for label, issuer, jwks_uri in ways:
        try:
            if label == "OpenID Connect" or not jwks_uri:
                document = identity.discovery(issuer)
                if label == "OpenID Connect":
                    identity.endpoint(document, "authorization_endpoint")
                    identity.endpoint(document, "token_endpoint")
                jwks_uri = identity.endpoint(document, "jwks_uri")
            keys = identity.documents.get(jwks_uri, parse_key_set)
            print(f"{label} {issuer}: {len(keys)} signing key(s) at {jwks_uri}")
        except ProviderFailed as error:
            print(f"{label} {issuer}: {error}")
            failed = True
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pi_stream_auth.py", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--viewers", type=Path, default=None)
    parser.add_argument("--key", type=Path, default=None)
    parser.add_argument("--oidc-client-secret", type=Path, default=None,
                        help="the OpenID Connect client secret's file (default: systemd's credential; none: a public client)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--listen", help="a socket path or HOST:PORT instead of systemd's socket (tests)")
    sub.add_parser("nginx-map")
    sub.add_parser("providers", help="fetch each identity provider's keys as a login would (exit 1 when one fails)")
    link = sub.add_parser("link")
    link.add_argument("user")
    link.add_argument("camera")
    link.add_argument("--seconds", type=int, default=None, help="lifetime (default: the site's link_days)")
    link.add_argument("--base-url", default="", help="e.g. https://cam.example.org (default: a path only)")
    args = parser.parse_args(argv)
    config = load_config(args)

    if args.command == "nginx-map":
        sys.stdout.write(config.nginx_map())
        return 0
    if args.command == "providers":
        return check_providers(config)
    if args.command == "link":
        if args.camera not in config.access.get(args.user, ()):
            print(f"{args.user!r} may not watch {args.camera!r} (or is not a viewer)", file=sys.stderr)
            return 2
        expires = int(time.time()) + (config.link_seconds if args.seconds is None else args.seconds)
        token = config.media_token(args.user, args.camera, expires)
        print(f"{args.base_url.rstrip('/')}/v/{token}/{args.camera}/index.m3u8")
        return 0
    server = make_server(config, args.listen)
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
