"""A fake Hikvision-style DVR: web pages over HTTP, live video over a WebSocket server on a port of its own.

What the DVR proxy on the Pi must cope with, as real firmware does it:
- the pages come from HTTP port 80 ("Server: App-webs/"), and `GET /` redirects
  to an ABSOLUTE http://<Host>/doc/page/login.asp that the proxy must rewrite;
- the page's script opens the video WebSocket itself, with HARD-CODED ports:
  wss://<page host>:7682 when the page came over https, ws://<host>:7681 over
  http; the DVR serves plain WebSocket on 7681 only, so the proxy listens with
  TLS on 7682 and passes to 7681;
- static files carry ETag and Last-Modified but no Cache-Control (the proxy
  decides), login is ISAPI's userCheck with Basic credentials and a 401 that has
  no WWW-Authenticate (the page shows its own error, browsers show no dialog),
  and settings are POSTed to /ISAPI/... (bodies larger than 1 KiB).

Runs with the project's venv Python (stdlib + `websockets`; it imports nothing
of pi_stream). pi_stream.lab.dvr starts it and reads its control socket; by hand:

    .venv/bin/python -m pi_stream.lab.fake_dvr --listen 127.0.0.1 --http-port 8080 --ws-port 7681 \
        --username admin --password-file pw.txt --control /tmp/dvr.sock

It prints "ready" on stdout once both servers listen and exits with status 0 on
SIGTERM or SIGINT. Port 0 lets the OS choose (stats report the real ports).

The WebSocket server takes any path and sends binary frames of --frame-bytes at
--fps (paced on a monotonic clock) until the client closes; each frame starts
with its big-endian 8-byte sequence number, from 0 per connection, then a fixed
filler. What the client sends is read and dropped.

Control protocol: newline-delimited JSON on the unix socket --control (mode
0600), one reply line per request line; every reply has "ok": true, or "ok":
false with "error".
  {"cmd": "stats"}  -> {"ok", "http_port", "ws_port", "requests": {path: count}, "logins": {"ok": n, "failed": n},
                        "recent": [the last 500 HTTP requests: {"time", "method", "path", "status", "host",
                                   "x_forwarded_for", "x_forwarded_proto", "cookies": [names]}],
                        "websockets": [the last 500 connections: {"id", "path" (with its query), "host", "x_forwarded_for",
                                      "x_forwarded_proto", "cookies", "opened", "closed" (epoch s or null), "frames", "open"}]}
  {"cmd": "reset"}  -> {"ok"}  zero the counts and forget requests and closed WebSockets; open ones stay, frames from 0
  {"cmd": "close_websockets"} -> {"ok", "closed": n}  close every open WebSocket (code 1001), each within 1/fps s
HTTP paths are counted without their query string; header values are null when absent.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.sync.server import Server, ServerConnection, serve

SERVER = "App-webs/"  # what Hikvision firmware sends, on pages and the WebSocket handshake alike
KEPT = 500  # requests and WebSocket connections remembered for stats
LOGIN_PAGE = "/doc/page/login.asp"
USER_CHECK = "/ISAPI/Security/userCheck"
# Answered with cookies that would replace a viewer's appliance cookies if the proxy let them through:
# the tests check that a DVR, the least trusted device on the site, cannot (tests/configs/test_dvr_flow.py).
HOSTILE_COOKIES = "/doc/page/hostile-cookies"
HOSTILE_SET_COOKIES = ("pi_stream_session=planted; Path=/auth/", "pi_stream_media=planted; Path=/hls/garden/", "WebSession=own; Path=/")

# A firmware build date: fixed, so a restarted fake revalidates the same as before (a proxy cache may hold the files).
LAST_MODIFIED = "Tue, 12 Mar 2024 08:00:00 GMT"
XML = "application/xml; charset=UTF-8"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
USER_CHECK_OK = f"{XML_HEAD}<userCheck><statusValue>200</statusValue><statusString>OK</statusString></userCheck>"
USER_CHECK_401 = f"{XML_HEAD}<userCheck><statusValue>401</statusValue><statusString>Unauthorized</statusString></userCheck>"
WS_CLOSE_TIMEOUT_SECONDS = 2  # a proxy that has gone away must not hold up SIGTERM for websockets' default 10 s

LOGIN_HTML = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Fake DVR</title>
<link rel="stylesheet" href="/doc/css/ui.css">
</head>
<body>
<img src="/doc/images/logo.png" alt="logo">
<form id="login-form">
<input id="username" name="username" autocomplete="username">
<input id="password" name="password" type="password" autocomplete="current-password">
<button id="login" type="button">Login</button>
</form>
<p id="login-result"></p>
<p id="video-status">not started</p>
<script src="/doc/script/lib.js"></script>
<script src="/doc/script/webvideo.js"></script>
</body>
</html>
"""

# The ports are constants, as in the firmware: the page never learns where it was proxied from.
WEBVIDEO_JS = """// Fake DVR live view: the video WebSocket goes to fixed ports of the page's own host, like Hikvision's.
(function () {
  'use strict';
  const tls = location.protocol === 'https:';
  const url = (tls ? 'wss://' : 'ws://') + location.hostname + ':' + (tls ? 7682 : 7681) + '/websocket/stream?channel=1';
  const video = {url: url, open: false, frames: 0, bytes: 0, gaps: 0, closed: false, closeCode: null, error: null};
  window.dvrVideo = video;
  let expected = 0n;  // every connection numbers its frames from 0

  function show() {
    const status = document.getElementById('video-status');
    if (status) status.textContent = JSON.stringify(video);
  }

  function frame(data) {
    video.frames += 1;
    video.bytes += data.byteLength;
    const sequence = data.byteLength >= 8 ? new DataView(data).getBigUint64(0) : -1n;  // big-endian
    if (sequence !== expected) video.gaps += 1;
    expected = sequence + 1n;
  }

  function connect() {
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      video.error = String(error);
      show();
      return;
    }
    socket.binaryType = 'arraybuffer';
    socket.onopen = function () { video.open = true; show(); };
    socket.onmessage = function (event) {
      if (event.data instanceof ArrayBuffer) { frame(event.data); show(); }
    };
    socket.onerror = function () { video.error = 'websocket error'; show(); };
    socket.onclose = function (event) {
      video.open = false;
      video.closed = true;
      video.closeCode = event.code;
      show();
    };
  }

  function login() {
    const user = document.getElementById('username').value;
    const password = document.getElementById('password').value;
    const result = document.getElementById('login-result');
    result.textContent = '';
    fetch('/ISAPI/Security/userCheck', {headers: {Authorization: 'Basic ' + btoa(user + ':' + password)}})
      .then(function (response) { result.textContent = response.ok ? 'ok' : 'failed ' + response.status; })
      .catch(function (error) { result.textContent = 'failed ' + error; });
  }

  function init() {
    document.getElementById('login').addEventListener('click', login);
    document.getElementById('login-form').addEventListener('submit', function (event) { event.preventDefault(); login(); });
    show();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
"""

UI_CSS = """body { font-family: sans-serif; margin: 2em; }
#login-form input, #login-form button { display: block; margin: 0.5em 0; }
#video-status { font-family: monospace; }
"""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} fake_dvr: {message}", file=sys.stderr, flush=True)


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, so a browser really decodes the logo."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")


def big_script(kib: int) -> bytes:
    """Exactly `kib` KiB of valid JavaScript (at least its fixed ends): the bulk of a real lib, mostly a comment."""
    head = b"/* Fake DVR library: filler the size of a real firmware's script bundle.\n"
    tail = f"*/\nwindow.dvrLib = {{kib: {kib}}};\n".encode()
    room = max(0, kib * 1024 - len(head) - len(tail))
    # No "/" in the filler, so no "*/" can end the comment early.
    lines = b"".join(b" * line %07d of deterministic filler text for caching and compression tests\n" % n for n in range(room // 60 + 1))
    return head + lines[:room] + tail


@dataclass(frozen=True)
class Config:
    listen: str
    http_port: int
    ws_port: int
    username: str
    password: str
    control: str | None
    frame_bytes: int
    fps: int
    static_kib: int


@dataclass(frozen=True)
class Asset:
    content_type: str
    body: bytes
    etag: str

    @classmethod
    def of(cls, content_type: str, body: bytes) -> Asset:
        return cls(content_type, body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    def matches(self, if_none_match: str | None) -> bool:
        tags = {tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")}
        return "*" in tags or self.etag in tags


def assets(config: Config) -> dict[str, Asset]:
    return {
        "/doc/script/lib.js": Asset.of("application/javascript", big_script(config.static_kib)),
        "/doc/script/webvideo.js": Asset.of("application/javascript", WEBVIDEO_JS.encode()),
        "/doc/css/ui.css": Asset.of("text/css", UI_CSS.encode()),
        "/doc/images/logo.png": Asset.of("image/png", tiny_png()),
    }


def cookie_names(header: str | None) -> list[str]:
    """Names only: values are sessions and tokens, not for logs or stats."""
    return [part.split("=", 1)[0].strip() for part in (header or "").split(";") if part.strip()]


def credentials_match(authorization: str | None, username: str, password: str) -> bool:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, colon, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared whatever the first gives: no timing hint of which part was wrong.
    same_user = hmac.compare_digest(user.encode(), username.encode())
    same_password = hmac.compare_digest(secret.encode(), password.encode())
    return bool(colon) and same_user and same_password


@dataclass(eq=False)
class WebSocketRecord:
    id: int
    path: str
    host: str | None
    x_forwarded_for: str | None
    x_forwarded_proto: str | None
    cookies: list[str]
    opened: float = field(default_factory=time.time)
    closed: float | None = None
    frames: int = 0
    close_requested: bool = False  # set by close_websockets, acted on by the connection's own thread

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["close_requested"]
        return {**data, "open": self.closed is None}


class Dvr:
    """Counters and records, shared by the HTTP, WebSocket and control threads under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.logins = {"ok": 0, "failed": 0}
        self.websockets: deque[WebSocketRecord] = deque(maxlen=KEPT)
        self.serial = 0
        self.http_port = 0
        self.ws_port = 0

    def request(self, record: dict[str, Any], login: bool | None) -> None:
        with self.lock:
            self.requests[record["path"]] += 1
            self.recent.append(record)
            if login is not None:
                self.logins["ok" if login else "failed"] += 1

    def websocket_opened(self, path: str, headers: Headers) -> WebSocketRecord:
        with self.lock:
            self.serial += 1
            record = WebSocketRecord(
                self.serial,
                path,
                headers.get("Host"),
                headers.get("X-Forwarded-For"),
                headers.get("X-Forwarded-Proto"),
                cookie_names(headers.get("Cookie")),
            )
            self.websockets.append(record)
        return record

    def frame_sent(self, record: WebSocketRecord) -> bool:
        """Count a frame; False once the connection should close."""
        with self.lock:
            record.frames += 1
            return not record.close_requested

    def websocket_closed(self, record: WebSocketRecord) -> None:
        with self.lock:
            record.closed = time.time()

    # ------------------------------------------------------------ commands

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "ok": True,
                "http_port": self.http_port,
                "ws_port": self.ws_port,
                "requests": dict(self.requests),
                "logins": dict(self.logins),
                "recent": [dict(record) for record in self.recent],
                "websockets": [record.as_json() for record in self.websockets],
            }

    def reset(self) -> dict[str, Any]:
        with self.lock:
            self.requests.clear()
            self.recent.clear()
            self.logins = {"ok": 0, "failed": 0}
            still_open = [record for record in self.websockets if record.closed is None]
            self.websockets.clear()
            for record in still_open:
                record.frames = 0
                self.websockets.append(record)
        return {"ok": True}

    def close_websockets(self) -> dict[str, Any]:
        with self.lock:
            victims = [record for record in self.websockets if record.closed is None and not record.close_requested]
            for record in victims:
                record.close_requested = True
        log(f"closing {len(victims)} WebSocket(s)")
        return {"ok": True, "closed": len(victims)}

    def command(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        commands = {"stats": self.stats, "reset": self.reset, "close_websockets": self.close_websockets}
        name = request.get("cmd") if isinstance(request, dict) else None
        if name not in commands:
            return {"ok": False, "error": f"unknown command {name!r}: {', '.join(commands)}"}
        return commands[name]()


# ---------------------------------------------------------------- HTTP


class DvrHttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser's idle keep-alive connection must not hold up the exit

    def __init__(self, config: Config, dvr: Dvr) -> None:
        self.config = config
        self.dvr = dvr
        self.assets = assets(config)
        if ":" in config.listen:
            self.address_family = socket.AF_INET6
        super().__init__((config.listen, config.http_port), DvrHandler)


class DvrHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the firmware; every answer has a Content-Length
    server: DvrHttpServer

    def version_string(self) -> str:
        return SERVER

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        asset = self.server.assets.get(path)
        if path == "/":
            # Absolute and http://, with whatever host the request named: the proxy has to rewrite it.
            host = self.headers.get("Host") or f"{self.server.config.listen}:{self.server.dvr.http_port}"
            self.answer(302, b"", "text/html", [("Location", f"http://{host}{LOGIN_PAGE}")])
        elif path == LOGIN_PAGE:
            self.answer(200, LOGIN_HTML.encode(), "text/html; charset=utf-8")
        elif asset is not None:
            validators = [("ETag", asset.etag), ("Last-Modified", LAST_MODIFIED)]
            if asset.matches(self.headers.get("If-None-Match")):
                self.answer(304, None, None, validators)
            else:
                self.answer(200, asset.body, asset.content_type, validators)
        elif path == USER_CHECK:
            self.user_check()
        elif path == HOSTILE_COOKIES:
            # A compromised DVR's answer: cookies named like the appliance's, on the appliance's paths.
            self.answer(200, b"ok\n", "text/plain", [("Set-Cookie", cookie) for cookie in HOSTILE_SET_COOKIES])
        else:
            self.answer(404, b"Not Found\n", "text/plain")

    def do_POST(self) -> None:
        body = self.read_body()  # always, so a keep-alive connection stays in step
        if urlsplit(self.path).path.startswith("/ISAPI/"):
            status = f"<statusCode>1</statusCode><statusString>OK</statusString><received>{len(body)}</received>"
            self.answer(200, f"{XML_HEAD}<ResponseStatus>{status}</ResponseStatus>".encode(), XML)
        else:
            self.answer(404, b"Not Found\n", "text/plain")

    def user_check(self) -> None:
        config = self.server.config
        if credentials_match(self.headers.get("Authorization"), config.username, config.password):
            cookie = f"WebSession={secrets.token_hex(16)}; path=/; HttpOnly"
            self.answer(200, USER_CHECK_OK.encode(), XML, [("Set-Cookie", cookie)], login=True)
        else:
            # No WWW-Authenticate: browsers would pop up their own dialog over the page's.
            self.answer(401, USER_CHECK_401.encode(), XML, login=False)

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline().strip():  # trailers, up to the empty line
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(
        self, status: int, body: bytes | None, content_type: str | None, headers: Sequence[tuple[str, str]] = (), login: bool | None = None
    ) -> None:
        """Send one response (body None: none at all, as for 304); recorded first, so stats read after it include it."""
        self.server.dvr.request(
            {
                "time": time.time(),
                "method": self.command,
                "path": urlsplit(self.path).path,
                "status": status,
                "host": self.headers.get("Host"),
                "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                "cookies": cookie_names(self.headers.get("Cookie")),
            },
            login,
        )
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


# ---------------------------------------------------------------- WebSocket


def make_stream_handler(config: Config, dvr: Dvr) -> Callable[[ServerConnection], None]:
    filler = (bytes(range(256)) * (config.frame_bytes // 256 + 1))[: config.frame_bytes - 8]
    interval = 1 / config.fps

    def stream(connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None  # websockets calls handlers after the handshake only
        record = dvr.websocket_opened(request.path, request.headers)
        log(f"WebSocket {record.id} opened: {request.path}")
        started = time.monotonic()
        sequence = 0
        try:
            while True:
                connection.send(sequence.to_bytes(8, "big") + filler)
                sequence += 1
                if not dvr.frame_sent(record):
                    connection.close(CloseCode.GOING_AWAY, "closed by the control socket")
                    break
                # Wait for the next frame's time by reading: what the client sends is dropped, its close is seen.
                deadline = started + sequence * interval
                while (remaining := deadline - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        connection.recv(timeout=remaining)
        except ConnectionClosed:
            pass
        finally:
            dvr.websocket_closed(record)
            log(f"WebSocket {record.id} closed after {sequence} frames")

    return stream


# ---------------------------------------------------------------- control socket


class ControlHandler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        for line in self.rfile:
            if line.strip():
                try:
                    self.wfile.write(json.dumps(self.server.dvr.command(line)).encode() + b"\n")
                except OSError:
                    return  # the client went away


class ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, dvr: Dvr) -> None:
        self.dvr = dvr
        # The controller gives each fake a path of its own: anything there is left by a killed instance.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old_umask = os.umask(0o177)  # 0600 from the start: the socket can close every viewer's video
        try:
            super().__init__(path, ControlHandler)
        finally:
            os.umask(old_umask)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="A fake Hikvision-style DVR: web pages over HTTP, video over a WebSocket port.")
    parser.add_argument("--listen", default="0.0.0.0", help="address for both servers (default 0.0.0.0)")
    parser.add_argument("--http-port", type=int, default=80, help="web pages (default 80; 0 = any free port, see stats)")
    parser.add_argument("--ws-port", type=int, default=7681, help="plain WebSocket video (default 7681; 0 = any free port)")
    parser.add_argument("--username", required=True, help="the one user ISAPI userCheck accepts")
    parser.add_argument("--password-file", required=True, help="its password, on the first line of this file (argv is world-readable)")
    parser.add_argument("--control", help="unix socket path for the control API (newline JSON)")
    parser.add_argument("--frame-bytes", type=int, default=4096, help="size of each binary video frame (default 4096, at least 8)")
    parser.add_argument("--fps", type=int, default=25, help="video frames per second (default 25)")
    parser.add_argument("--static-kib", type=int, default=1024, help="size of /doc/script/lib.js in KiB (default 1024)")
    args = parser.parse_args(argv)
    if args.frame_bytes < 8 or args.fps < 1 or args.static_kib < 0:
        parser.error("--frame-bytes must be >= 8, --fps >= 1, --static-kib >= 0")
    if not (0 <= args.http_port <= 65535 and 0 <= args.ws_port <= 65535):
        parser.error("--http-port and --ws-port are 0..65535")
    try:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.readline().rstrip("\r\n")
    except OSError as exc:
        parser.error(f"--password-file: {exc}")
    return Config(args.listen, args.http_port, args.ws_port, args.username, password, args.control, args.frame_bytes, args.fps, args.static_kib)


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    # Blocked before any thread starts (threads inherit the mask): only sigwait() below takes them.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    dvr = Dvr()
    try:
        http = DvrHttpServer(config, dvr)
        ws: Server = serve(
            make_stream_handler(config, dvr),
            config.listen,
            config.ws_port,
            compression=None,  # like the firmware; and the filler would deflate to nothing
            server_header=SERVER,
            close_timeout=WS_CLOSE_TIMEOUT_SECONDS,
        )
    except OSError as exc:
        log(f"could not listen on {config.listen} (http {config.http_port}, ws {config.ws_port}): {exc}")
        return 1
    dvr.http_port = http.server_address[1]
    dvr.ws_port = ws.socket.getsockname()[1]
    control = ControlServer(config.control, dvr) if config.control else None
    servers: list[Any] = [http, ws, *([control] if control else [])]
    threading.Thread(target=ws.serve_forever, name="websocket", daemon=True).start()
    for server in (http, control):
        if server is not None:
            # A short poll: shutdown() waits for it, and SIGTERM should take no more than a moment.
            threading.Thread(target=server.serve_forever, args=(0.1,), name=type(server).__name__, daemon=True).start()
    log(f"serving http://{config.listen}:{dvr.http_port}/ and ws://{config.listen}:{dvr.ws_port}/ ({config.frame_bytes} B at {config.fps} fps)")
    print("ready", flush=True)
    received = signal.sigwait(stop_signals)
    log(f"stopping on {signal.Signals(received).name}")
    for server in servers:
        server.shutdown()  # ws: closes open WebSockets with 1001 and waits for their threads
    http.server_close()
    if control:
        control.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.control)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
