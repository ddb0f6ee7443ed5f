#!/usr/bin/python3
"""pi-stream's login service and token tool, on the Pi. Installed by pi-stream; do not edit here.

Why it exists: nginx's basic auth checks the password hash on every playlist
and segment request, inside the worker that serves video. A strong hash then
costs every viewer on every request, and a wrong-password loop stalls them all.
Here the slow check (bcrypt) runs once per login, in this process, one at a
time; media requests carry a token nginx checks with one MD5 (secure_link).

Tokens: "USER~EXPIRES~SIGNATURE", SIGNATURE = base64url(MD5(K + EXPIRES + USER
+ CAMERA + K)) without padding, where K is a per-user, per-camera key:
HMAC-SHA256(site key, "media", USER, CAMERA, USER'S STORED HASH). nginx gets
the keys as a map (`nginx-map`), so a token is accepted only for a camera the
user may watch, and stops working as soon as the user is removed, their
password changes or their camera is taken away (at the next deploy).
The key sits on both sides of the MD5 input: no length extension.

DVRs (viewer_auth in front of a proxied DVR's web interface): the DVR's own
virtual host has a small login page posting to /auth/dvr/NAME/login, and nginx
asks /auth/dvr/NAME/check (auth_request) before every proxied request. The
cookie is "USER~EXPIRES~HMAC-SHA256(site key, "dvr", NAME, USER, EXPIRES, USER'S
STORED HASH)": good for that DVR only, checked without bcrypt, and void once the
password changes or the viewer leaves the DVR's list (access.json's "dvrs").

Subcommands:
  serve       the login service (systemd socket activation, or --listen for tests)
  nginx-map   print the nginx map of token keys (root only: it holds secrets)
  link        print a player URL (VLC, ffplay) for USER and CAMERA

Runs on Debian's python3 (3.11+) with python3-bcrypt; nothing else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/pi-stream/auth/access.json")
DEFAULT_VIEWERS = Path("/etc/pi-stream/auth/viewers")
DEFAULT_KEY = Path("/etc/pi-stream/auth/token.key")

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
DVR_ROUTE_RE = re.compile(r"^/auth/dvr/([a-z0-9][a-z0-9_-]{0,31})/(login|check|logout)$")
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
class Config:
    """access.json (rendered by pi-stream, no secrets) plus the two secret files."""

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

    @classmethod
    def load(cls, config_path: Path, viewers_path: Path, key_path: Path) -> Config:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        hashes = {}
        for line in viewers_path.read_text(encoding="utf-8").splitlines():
            name, sep, hashed = line.partition(":")
            if sep and USER_RE.fullmatch(name):
                hashes[name] = hashed.strip()
        key = bytes.fromhex(key_path.read_text(encoding="ascii").strip())
        if len(key) < 32:
            raise ValueError(f"{key_path}: the site key must be at least 32 bytes (64 hex digits)")
        return cls(
            cameras={c["name"]: c["title"] for c in data["cameras"]},
            access={user: tuple(cams) for user, cams in data["access"].items() if user in hashes},
            dvrs={name: tuple(user for user in users if user in hashes) for name, users in data.get("dvrs", {}).items()},
            webrtc=tuple(data.get("webrtc", ())),  # absent from the access.json of a pi-stream before WebRTC
            session_seconds=int(data["session_seconds"]),
            link_seconds=int(data["link_seconds"]),
            secure_cookies=bool(data["secure_cookies"]),
            hashes=hashes,
            site_key=key,
            cookie_prefix=str(data.get("cookie_prefix", COOKIE_PREFIX)),
        )

    def cookie_name(self, kind: str) -> str:
        return f"{self.cookie_prefix}_{kind}"

    def _hmac(self, *parts: str) -> bytes:
        return hmac.new(self.site_key, "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def media_paths(self, camera: str) -> tuple[str, ...]:
        """The paths a camera's media cookie goes to: its HLS and files, and its WebRTC signalling if it has one."""
        prefixes = MEDIA_PREFIXES + ((WEBRTC_PREFIX,) if camera in self.webrtc else ())
        return tuple(f"{prefix}{camera}/" for prefix in prefixes)

    def media_key(self, user: str, camera: str) -> str:
        return self._hmac("media", user, camera, self.hashes[user]).hex()

    def media_token(self, user: str, camera: str, expires: int) -> str:
        key = self.media_key(user, camera)
        digest = hashlib.md5(f"{key}{expires}{user}{camera}{key}".encode(), usedforsecurity=False).digest()
        return f"{user}~{expires}~{b64url(digest)}"

    def signed_token(self, user: str, expires: int, kind: str, *scope: str) -> str:
        """USER~EXPIRES~HMAC. The kind (and scope, e.g. a DVR's name) keeps one kind of cookie from passing for another;
        the stored hash ends every token of a user whose password changes."""
        signature = self._hmac(kind, *scope, user, str(expires), self.hashes[user])
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
            stored = config.hashes.get(user) if user in (config.access if users is None else users) else None
            candidate = password.encode("utf-8")[:72]
            matched = bcrypt.checkpw(candidate, (stored or "").encode("ascii") or UNKNOWN_USER_HASH)
            return matched and stored is not None
        finally:
            self.release()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pi-stream-auth"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_SECONDS

    # Set on the class by make_server().
    config: Config
    checker: Checker

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
        self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        routes = {"/auth/login": self.login, "/auth/logout": self.logout, "/auth/link": self.link}
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

    def login(self, body: dict) -> None:
        found = self.credentials(body)
        if found is None:
            return
        user, password = found
        if not self.password_ok(user, password, priority=self.known_device(user, self.config.access)):
            return
        expires = int(time.time()) + self.config.session_seconds
        session = self.config.session_token(user, expires)
        cookies = [self.cookie(self.config.cookie_name(SESSION_COOKIE), session, "/auth/", self.config.session_seconds)]
        cookies.append(self.device_cookie(user, "/auth/login"))
        for camera in self.config.access[user]:
            token = self.config.media_token(user, camera, expires)
            # The same token on every path: nginx checks it identically for video, snapshots/status and WebRTC signalling.
            for path in self.config.media_paths(camera):
                cookies.append(self.cookie(self.config.cookie_name(MEDIA_COOKIE), token, path, self.config.session_seconds))
        self.send_json(200, self.session_body(user, expires), cookies=cookies)

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
        """The handler for a DVR's login or logout; None (404) for any other path and for a DVR that is not configured."""
        dvr, action = self.dvr_route()
        handler = {"login": self.dvr_login, "logout": self.dvr_logout}.get(action)
        if handler is None or dvr not in self.config.dvrs:
            return None
        return lambda body: handler(dvr, body)

    def dvr_login(self, dvr: str, body: dict) -> None:
        found = self.credentials(body)
        if found is None:
            return
        user, password = found
        allowed = self.config.dvrs[dvr]
        # Off the DVR's list is checked like an unknown user: the same bcrypt cost and the same 401 as a wrong password.
        if not self.password_ok(user, password, priority=self.known_device(user, allowed, "dvr", dvr), users=allowed):
            return
        expires = int(time.time()) + self.config.session_seconds
        cookie = self.cookie(self.config.cookie_name(DVR_COOKIE), self.config.dvr_token(dvr, user, expires), "/", self.config.session_seconds)
        self.send_json(200, {"user": user, "expires": expires}, cookies=[cookie, self.device_cookie(user, DVR_LOGIN_PATH, "dvr", dvr)])

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
        scheme = "https" if self.headers.get("X-Forwarded-Proto") == "https" else "http"
        host = self.headers.get("Host", "")
        self.send_json(200, {"url": f"{scheme}://{host}/v/{token}/{camera}/index.m3u8", "expires": expires})

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

    def cookie(self, name: str, value: str, path: str, max_age: int) -> str:
        secure = "; Secure" if self.config.secure_cookies else ""
        return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"

    def read_json(self) -> dict | None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            return None
        try:
            data = json.loads(self.rfile.read(int(length)) or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

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
    handler = type("BoundHandler", (Handler,), {"config": config, "checker": Checker()})
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
    return Config.load(args.config, viewers, key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pi_stream_auth.py", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--viewers", type=Path, default=None)
    parser.add_argument("--key", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--listen", help="a socket path or HOST:PORT instead of systemd's socket (tests)")
    sub.add_parser("nginx-map")
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
