#!/usr/bin/python3
"""A fake consumer NVR: RTSP channels that count every client and refuse past a session limit.

Runs under Debian's /usr/bin/python3, the only Python with the `gi` module
(stdlib + gi only: it must not import pi_stream). pi_stream.lab.nvr starts it
and talks to its control socket; it can also be run by hand:

    /usr/bin/python3 pi_stream/lab/fake_nvr.py --port 8554 --channels 4 --max-sessions 2 \
        --username admin --password secret --h265-channels 3 --control /tmp/nvr.sock

It serves rtsp://HOST:PORT/ip1/0 ... /ipN/0 (videotestsrc, a different pattern
per channel, x264 or x265 at --size/--fps with a 1 s GOP, no audio). Each
channel is one shared media factory: one encoder per channel however many
clients watch it. It prints "ready" on stdout once it listens and exits with
status 0 on SIGTERM or SIGINT.

Like a consumer NVR, --max-sessions limits concurrent RTSP connections (TCP
clients) across all channels: a client that connects while that many are open
has its connection dropped at once, before any request is answered, so ffmpeg
fails fast. During an outage every client is dropped and every new one too.

Counts, per channel, for "unattributed" and in "total":
  connections      TCP clients accepted (refused ones included)
  refused          clients dropped at connect: over the limit or during an outage
  unauthorized     401 answers, including the challenge every client gets before it sends credentials
  bad_credentials  401 answers to requests that carried credentials (a wrong user or password)
  plays            PLAY requests answered 200
  dropped          served clients closed by the `drop` or `outage` commands
  open             clients connected now (not counting refused ones that are still closing)
A client is counted in "total" when it connects, and joins a channel when its
first request names that channel's path (ffmpeg's first OPTIONS does, so refused
clients are attributed too). One that closes before naming a served path is
counted in "unattributed" when it closes. Events: one per TCP client, the last
10,000: {"time": connect time (epoch s), "client": serial, "address", "channel":
N or null, "outcome": "accepted" | "refused", "reason": null | "limit" |
"outage", "closed": epoch s or null, "plays", "unauthorized", "dropped"};
"channel" and the fields after "reason" change while the client lives.
"sessions" in stats is gst's RTSP session pool: a client that vanished without
a TEARDOWN (killed, dropped) keeps its session there for about 65 s.

Control protocol: newline-delimited JSON on the unix socket given by --control
(mode 0600). Send one JSON object per line, read one JSON line back per
request; a connection may carry several requests. Every reply has "ok": true,
or "ok": false with "error".
  {"cmd": "stats"}                  -> {"ok", "time", "port", "max_sessions", "outage_remaining", "sessions",
  {"cmd": "stats", "since": EPOCH}      "total": {counts}, "channels": {"1": {counts}, ...}, "unattributed": {counts},
                                        "events": [events with time >= since], "events_lost": n}
  {"cmd": "drop"}                   -> {"ok", "closed": n}   close every served client
  {"cmd": "drop", "channel": N}     -> {"ok", "closed": n}   close the clients of channel N
  {"cmd": "outage", "seconds": S}   -> {"ok", "closed": n}   drop everyone and refuse all for S s; S=0 ends an outage
  {"cmd": "limit", "max_sessions": M} -> {"ok"}              0 = unlimited; open clients above M stay
  {"cmd": "reset"}                  -> {"ok"}                zero the counts and events ("open" keeps counting live clients)
For example: printf '{"cmd": "stats"}\\n' | socat - UNIX-CONNECT:/tmp/nvr.sock

gst-rtsp-server 1.22 under PyGObject crashes (abort or heap corruption) on
gst_rtsp_client_close() of a freshly accepted client, on a non-OK return from
pre-options-request, and with a handler on send-message. So this script only
shuts down client sockets (shutdown(2); gst then sees end of file and closes the
client itself), hooks requests through an RTSPAuth subclass rather than pre-*
signals, and counts 401s where RTSPAuth generates the WWW-Authenticate header.
Those hooks and the "closed" and "play-request" signals run in gst's client
threads, "client-connected" in the main loop: every count is taken under one lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

COUNTS = ("connections", "refused", "unauthorized", "bad_credentials", "plays", "dropped", "open")
EVENTS_KEPT = 10_000
CHANNEL_PATH = re.compile(r"^/ip(\d+)/0(?:/|$)")
# One per channel, cycling; static pictures keep 16 encoders cheap, the ball moves.
PATTERNS = (
    "smpte", "ball", "pinwheel", "spokes", "checkers-8", "circular", "colors", "smpte75",
    "bar", "gradient", "gamut", "zone-plate", "smpte-rp-219", "checkers-4", "chroma-zone-plate", "red",
)  # fmt: skip
ROLE = "user"
CHECK_URL = "auth.check.url"
CHECK_CLIENT_SETTINGS = "auth.check.transport.client-settings"
SESSION_CLEANUP_SECONDS = 2  # gst removes expired RTSP sessions only when asked
MAIN_LOOP_TIMEOUT_SECONDS = 10


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} fake_nvr: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    listen: str
    port: int
    channels: int
    max_sessions: int
    username: str | None
    password: str | None
    auth_method: str
    h265_channels: frozenset[int]
    control: str | None
    width: int
    height: int
    fps: int


@dataclass(eq=False)
class ClientRecord:
    """What we know of one TCP client; `socket` is our own reference, dropped when gst closes the client."""

    socket: Gio.Socket | None
    refused: bool
    event: dict[str, Any]
    channel: int | None = None
    dropped: bool = False


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def shutdown(sock: Gio.Socket | None, read: bool) -> None:
    """shutdown(2), never close(2): gst sees end of file and tears the client down in its own thread."""
    if sock is None:
        return
    with contextlib.suppress(GLib.Error):  # the peer or gst closed it already
        sock.shutdown(read, True)


class Nvr:
    """The counters, the client table and the commands; the gst callbacks call into it from any thread."""

    def __init__(self, config: Config, server: GstRtspServer.RTSPServer) -> None:
        self.config = config
        self.server = server
        self.lock = threading.Lock()
        self.clients: dict[GstRtspServer.RTSPClient, ClientRecord] = {}
        self.max_sessions = config.max_sessions
        self.outage_until = 0.0  # time.monotonic() deadline; 0 = no outage
        self.serial = 0
        self.total = zero_counts()
        self.unattributed = zero_counts()
        self.channels = {number: zero_counts() for number in range(1, config.channels + 1)}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.events_lost = 0
        self.auth: GstRtspServer.RTSPAuth | None = None

    # ------------------------------------------------------------ gst callbacks

    def client_connected(self, _server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        """Main loop thread, before gst attaches the client: count it, and refuse it if over the limit."""
        connection = client.get_connection()
        sock = connection.get_read_socket()
        address = connection.get_ip()
        with self.lock:
            self.serial += 1
            reason = None
            if time.monotonic() < self.outage_until:
                reason = "outage"
            elif self.max_sessions and self.total["open"] >= self.max_sessions:
                reason = "limit"
            event = {
                "time": time.time(),
                "client": self.serial,
                "address": address,
                "channel": None,
                "outcome": "refused" if reason else "accepted",
                "reason": reason,
                "closed": None,
                "plays": 0,
                "unauthorized": 0,
                "dropped": False,
            }
            if len(self.events) == self.events.maxlen:
                self.events_lost += 1
            self.events.append(event)
            self.total["connections"] += 1
            self.total["refused" if reason else "open"] += 1
            self.clients[client] = ClientRecord(socket=sock, refused=reason is not None, event=event)
        client.connect("closed", self.client_closed)
        client.connect("play-request", self.play_request)
        if reason:
            # Write side only: the peer sees the connection end at once, and gst still reads
            # the request it already sent, which names the channel the refusal is counted on.
            shutdown(sock, read=False)
            log(f"refused client {event['client']} from {event['address']} ({reason})")

    def client_closed(self, client: GstRtspServer.RTSPClient) -> None:
        with self.lock:
            record = self.clients.pop(client, None)
            if record is None:
                return
            record.event["closed"] = time.time()
            if record.channel is None:
                self.unattributed["connections"] += 1
                if record.refused:
                    self.unattributed["refused"] += 1
            elif not record.refused:
                self.channels[record.channel]["open"] -= 1
            if not record.refused:
                self.total["open"] -= 1
            # Our reference kept the socket open; gst has let go of it, so the last close is ours.
            record.socket = None

    def play_request(self, client: GstRtspServer.RTSPClient, _ctx: GstRtspServer.RTSPContext) -> None:
        with self.lock:
            record = self.clients.get(client)
            if record is not None:
                record.event["plays"] += 1
            self._bucket(record)["plays"] += 1
            self.total["plays"] += 1

    def request_seen(self, client: GstRtspServer.RTSPClient | None, uri: GstRtsp.RTSPUrl | None) -> None:
        """Every request with a URL passes here first (the URL check): attribute the client to its channel."""
        match = CHANNEL_PATH.match(uri.abspath) if uri is not None and uri.abspath else None
        channel = int(match.group(1)) if match else None
        if channel not in self.channels:
            return
        with self.lock:
            record = self.clients.get(client)
            if record is None or record.channel is not None:
                return
            record.channel = channel
            record.event["channel"] = channel
            counts = self.channels[channel]
            counts["connections"] += 1
            counts["refused" if record.refused else "open"] += 1

    def unauthorized(self, client: GstRtspServer.RTSPClient | None, with_credentials: bool) -> None:
        with self.lock:
            record = self.clients.get(client)
            if record is not None:
                record.event["unauthorized"] += 1
            for counts in (self._bucket(record), self.total):
                counts["unauthorized"] += 1
                counts["bad_credentials"] += int(with_credentials)

    def _bucket(self, record: ClientRecord | None) -> dict[str, int]:
        return self.channels[record.channel] if record is not None and record.channel is not None else self.unattributed

    # ------------------------------------------------------------ commands (main loop thread)

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        remaining = max(0.0, self.outage_until - time.monotonic()) if self.outage_until else 0.0
        # gst calls first, outside our lock: a client thread may hold gst's locks while it waits for ours.
        port = self.server.get_bound_port()
        sessions = self.server.get_session_pool().get_n_sessions()
        with self.lock:
            return {
                "ok": True,
                "time": time.time(),
                "port": port,
                "max_sessions": self.max_sessions,
                "outage_remaining": round(remaining, 3),
                "sessions": sessions,
                "total": dict(self.total),
                "channels": {str(number): dict(counts) for number, counts in self.channels.items()},
                "unattributed": dict(self.unattributed),
                "events": [dict(event) for event in self.events if event["time"] >= since],
                "events_lost": self.events_lost,
            }

    def drop(self, channel: int | None = None) -> dict[str, Any]:
        if channel is not None and channel not in self.channels:
            raise ValueError(f"no channel {channel}: this NVR serves 1..{self.config.channels}")
        with self.lock:
            victims = [
                record
                for record in self.clients.values()
                if not record.refused and not record.dropped and (channel is None or record.channel == channel)
            ]
            sockets = []
            for record in victims:
                record.dropped = True
                record.event["dropped"] = True
                self._bucket(record)["dropped"] += 1
                self.total["dropped"] += 1
                sockets.append(record.socket)
        for sock in sockets:
            shutdown(sock, read=True)
        log(f"dropped {len(sockets)} client(s) of {'every channel' if channel is None else f'channel {channel}'}")
        return {"ok": True, "closed": len(sockets)}

    def outage(self, seconds: float) -> dict[str, Any]:
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if seconds == 0:
            self.outage_until = 0.0
            log("outage ended")
            return {"ok": True, "closed": 0}
        self.outage_until = time.monotonic() + seconds
        log(f"outage for {seconds:g} s")
        return self.drop(None)

    def limit(self, max_sessions: int) -> dict[str, Any]:
        if max_sessions < 0:
            raise ValueError("max_sessions must be >= 0 (0 = unlimited)")
        self.max_sessions = max_sessions
        log(f"max sessions now {max_sessions or 'unlimited'}")
        return {"ok": True}

    def reset(self) -> dict[str, Any]:
        with self.lock:
            for counts in (self.total, self.unattributed, *self.channels.values()):
                for key in COUNTS:
                    if key != "open":
                        counts[key] = 0
            self.events.clear()
            self.events_lost = 0
        return {"ok": True}


class CountingAuth(GstRtspServer.RTSPAuth):
    """Installed even without credentials: its URL check sees every request, and it is where 401s are made."""

    def __init__(self, nvr: Nvr, credentials: bool) -> None:
        super().__init__()
        self.nvr = nvr
        self.credentials = credentials

    def do_check(self, ctx: GstRtspServer.RTSPContext, check: str) -> bool:
        if check == CHECK_URL:
            self.nvr.request_seen(ctx.client, ctx.uri)
        if not self.credentials:
            # What gst does with no RTSPAuth at all: allow everything but client-chosen transport settings.
            return check != CHECK_CLIENT_SETTINGS
        return GstRtspServer.RTSPAuth.do_check(self, ctx, check)

    def do_generate_authenticate_header(self, ctx: GstRtspServer.RTSPContext) -> None:
        # gst calls this for every 401 it sends, and only then.
        found = False
        if ctx.request is not None:
            result, _value = ctx.request.get_header(GstRtsp.RTSPHeaderField.AUTHORIZATION, 0)
            found = result == GstRtsp.RTSPResult.OK
        self.nvr.unauthorized(ctx.client, found)
        GstRtspServer.RTSPAuth.do_generate_authenticate_header(self, ctx)


def launch_line(config: Config, channel: int) -> str:
    pattern = PATTERNS[(channel - 1) % len(PATTERNS)]
    fps = config.fps
    source = f"videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={config.width},height={config.height},framerate={fps}/1"
    # x264 with one thread: 16 channels took 11 % of a core with x264's own thread count (149 threads), 8 % with
    # one each (85). x265 costs ~4.5 % per channel here either way.
    if channel in config.h265_channels:
        encode = f"x265enc speed-preset=ultrafast tune=zerolatency key-int-max={fps} ! rtph265pay name=pay0 pt=96 config-interval=1"
    else:
        encode = f"x264enc threads=1 speed-preset=ultrafast tune=zerolatency key-int-max={fps} ! rtph264pay name=pay0 pt=96 config-interval=1"
    return f"( {source} ! {encode} )"


def make_server(config: Config) -> tuple[GstRtspServer.RTSPServer, Nvr]:
    server = GstRtspServer.RTSPServer()
    server.set_address(config.listen)
    server.set_service(str(config.port))
    nvr = Nvr(config, server)
    credentials = config.username is not None
    auth = CountingAuth(nvr, credentials)
    if credentials:
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        if config.auth_method == "basic":
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(config.username, config.password or ""), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        else:
            # PyGObject cannot pass BASIC|DIGEST (not a valid value of that enum), so one method at a time.
            auth.add_digest(config.username, config.password or "", token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    server.set_auth(auth)
    nvr.auth = auth  # a Python reference keeps the Python half of the subclass alive
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(ROLE, "media.factory.access", True)
    permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
    mounts = server.get_mount_points()
    for channel in range(1, config.channels + 1):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(config, channel))
        factory.set_shared(True)
        factory.set_permissions(permissions)
        mounts.add_factory(f"/ip{channel}/0", factory)
    server.connect("client-connected", nvr.client_connected)
    return server, nvr


def call_in_main_loop(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `function` in the GLib main loop (gst objects are touched there only) and wait for its result."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> bool:
        try:
            box["reply"] = function()
        except (ValueError, TypeError) as exc:
            box["reply"] = {"ok": False, "error": str(exc)}
        finally:
            done.set()
        return GLib.SOURCE_REMOVE

    GLib.idle_add(run)
    if not done.wait(MAIN_LOOP_TIMEOUT_SECONDS):
        return {"ok": False, "error": f"the main loop did not run the command within {MAIN_LOOP_TIMEOUT_SECONDS} s"}
    return box["reply"]


def command(nvr: Nvr, request: Any) -> Callable[[], dict[str, Any]]:
    """The call a request line asks for; ValueError with a message the client sees if it is malformed."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ValueError('a request is a JSON object with "cmd": stats, drop, outage, limit or reset')
    cmd = request["cmd"]

    def number(key: str, kind: type) -> Any:
        value = request.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or (kind is int and not isinstance(value, int)):
            raise ValueError(f'"{cmd}" needs "{key}" as a number' + (" (an integer)" if kind is int else ""))
        return value

    if cmd == "stats":
        since = number("since", float) if "since" in request else 0.0
        return lambda: nvr.stats(since)
    if cmd == "drop":
        channel = number("channel", int) if request.get("channel") is not None else None
        return lambda: nvr.drop(channel)
    if cmd == "outage":
        seconds = number("seconds", float)
        return lambda: nvr.outage(seconds)
    if cmd == "limit":
        max_sessions = number("max_sessions", int)
        return lambda: nvr.limit(max_sessions)
    if cmd == "reset":
        return nvr.reset
    raise ValueError(f"unknown command {cmd!r}: stats, drop, outage, limit or reset")


class ControlServer:
    """The unix socket; one thread accepts, one thread per connection reads request lines."""

    def __init__(self, path: str, nvr: Nvr) -> None:
        self.path = path
        self.nvr = nvr
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # left by a killed instance
            else:
                raise SystemExit(f"fake_nvr: control socket {path} is in use by another process")
            finally:
                probe.close()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # 0600 from the start: the socket can drop every client
        try:
            self.listener.bind(path)
        finally:
            os.umask(old_umask)
        self.listener.listen(16)
        threading.Thread(target=self.accept, name="control", daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed at exit
            threading.Thread(target=self.serve, args=(connection,), name="control-client", daemon=True).start()

    def serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    reply = call_in_main_loop(command(self.nvr, json.loads(line)))
                except json.JSONDecodeError as exc:
                    reply = {"ok": False, "error": f"not JSON: {exc}"}
                except ValueError as exc:
                    reply = {"ok": False, "error": str(exc)}
                try:
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
                except OSError:
                    return  # the client went away

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="A fake consumer NVR (gst-rtsp-server) that counts and limits RTSP clients.")
    parser.add_argument("--listen", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=554, help="RTSP port (default 554; 0 = any free port, see stats)")
    parser.add_argument("--channels", type=int, default=4, help="serve /ip1/0 ... /ipN/0 (default 4)")
    parser.add_argument("--max-sessions", type=int, default=0, help="concurrent RTSP connections, all channels (0 = unlimited)")
    parser.add_argument("--username", help="require RTSP auth with this user")
    parser.add_argument("--password", help="its password (visible in ps: prefer --password-file)")
    parser.add_argument("--password-file", help="read the password from this file (one line)")
    parser.add_argument("--auth-method", choices=("digest", "basic"), default="digest", help="default digest, like current NVRs")
    parser.add_argument("--h265-channels", default="", help="comma-separated channels sent as H.265 (x265enc), e.g. 3,5")
    parser.add_argument("--control", help="unix socket path for the control API (newline JSON)")
    parser.add_argument("--size", default="320x180", help="WIDTHxHEIGHT (default 320x180)")
    parser.add_argument("--fps", type=int, default=10, help="frames per second, also the GOP length (default 10)")
    args = parser.parse_args(argv)
    size = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not size:
        parser.error(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 320x180")
    if args.channels < 1 or args.fps < 1 or args.max_sessions < 0 or not 0 <= args.port <= 65535:
        parser.error("--channels and --fps must be >= 1, --max-sessions >= 0, --port 0..65535")
    try:
        h265 = frozenset(int(part) for part in args.h265_channels.split(",") if part.strip())
    except ValueError:
        parser.error(f"--h265-channels {args.h265_channels!r}: expected channel numbers like 3,5")
    if not h265 <= set(range(1, args.channels + 1)):
        parser.error(f"--h265-channels {sorted(h265)}: channels are 1..{args.channels}")
    password = args.password
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\n")
        except OSError as exc:
            parser.error(f"--password-file: {exc}")
    if (args.username is None) != (password is None):
        parser.error("--username and --password (or --password-file) go together")
    return Config(
        listen=args.listen,
        port=args.port,
        channels=args.channels,
        max_sessions=args.max_sessions,
        username=args.username,
        password=password,
        auth_method=args.auth_method,
        h265_channels=h265,
        control=args.control,
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=args.fps,
    )


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    Gst.init(None)
    server, nvr = make_server(config)
    try:
        # What server.attach() does, but its error says why (attach() only returns 0).
        server.create_source(None).attach(None)
    except GLib.Error as exc:
        log(f"could not listen on {config.listen}:{config.port}: {exc.message}")
        return 1
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(SESSION_CLEANUP_SECONDS, lambda: pool.cleanup() >= 0)
    control = ControlServer(config.control, nvr) if config.control else None
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    log(
        f"serving rtsp://{config.listen}:{server.get_bound_port()}/ip1/0 .. /ip{config.channels}/0, "
        f"max sessions {config.max_sessions or 'unlimited'}, auth {config.auth_method if config.username else 'none'}, "
        f"H.265 on {sorted(config.h265_channels) or 'none'}"
    )
    print("ready", flush=True)
    loop.run()
    if control:
        control.close()
    log("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # gst's client and streaming threads may still call into Python (closed, play-request)
    # while the interpreter shuts down, which can crash it; the kernel closes every socket.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
