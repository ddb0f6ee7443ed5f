"""One viewer, run inside a client network namespace by bench/auth/run.py (not meant to be run by hand).

    viewer.py login BASE USER            password on stdin; prints {"status", "cookie", "playlist", "link"}
    viewer.py play BASE USER --auth token|basic --seconds S ...
                                         password on stdin; prints "ready START END" (the measured window,
                                         CLOCK_MONOTONIC) once logged in, then one JSON line

`play` behaves like a live HLS player on one connection (keep-alive): fetch the
playlist every `--poll` seconds, fetch every segment that is new since the last
playlist, and record every request's latency inside the measured window. It
reports the media sequence numbers it fetched whole; the caller compares them
with the segments the camera made during the window (read on the host): one
not fetched is a missed segment, where a real player would have stalled or skipped.

Passwords come on stdin, never in argv (the process list is readable by every user).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

# The lab's certificate is self-signed and made on the host; what is measured is the server, not the trust chain.
warnings.simplefilter("ignore", InsecureRequestWarning)

TIMEOUT = 10.0  # a request slower than this counts as failed, at this latency


def login(session: requests.Session, base: str, user: str, password: str) -> tuple[requests.Response, float]:
    start = time.perf_counter()
    response = session.post(f"{base}/auth/login", json={"user": user, "password": password}, timeout=TIMEOUT, verify=False)
    return response, time.perf_counter() - start


def playlist_path(base: str, body: dict, camera: str) -> str:
    for entry in body.get("cameras", []):
        if entry.get("name") == camera and entry.get("playlist"):
            return urlsplit(urljoin(base + "/", entry["playlist"])).path
    return f"/hls/{camera}/index.m3u8"


def command_login(args: argparse.Namespace, password: str) -> int:
    session = requests.Session()
    response, _ = login(session, args.base, args.user, password)
    out: dict = {"status": response.status_code}
    if response.status_code == 200:
        playlist = playlist_path(args.base, response.json(), args.camera)
        out["playlist"] = playlist
        # The Cookie header the browser would send for this camera's media (path-scoped cookies included).
        prepared = session.prepare_request(requests.Request("GET", args.base + playlist))
        out["cookie"] = prepared.headers.get("Cookie", "")
        link = session.post(f"{args.base}/auth/link", json={"camera": args.camera}, timeout=TIMEOUT, verify=False)
        out["link_status"] = link.status_code
        if link.status_code == 200:
            out["link"] = urlsplit(urljoin(args.base + "/", link.json()["url"])).path
    print(json.dumps(out), flush=True)
    return 0


def parse_playlist(text: str) -> tuple[int, list[str]] | None:
    if not text.startswith("#EXTM3U"):
        return None
    sequence, uris = 0, []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line and not line.startswith("#"):
            uris.append(line)
    return sequence, uris


class Player:
    def __init__(self, session: requests.Session, playlist_url: str, window: tuple[float, float], grace: float) -> None:
        self.session = session
        self.playlist_url = playlist_url
        self.start, self.end = window
        self.stop = self.end + grace
        self.latencies: dict[str, list[float]] = {"playlist": [], "segment": []}
        self.failed: dict[str, int] = {"playlist": 0, "segment": 0}
        self.statuses: dict[str, int] = {}
        self.fetched: set[int] = set()  # media sequence numbers of segments fetched whole, at any time
        self.restarts = 0
        self.next_sequence: int | None = None

    def get(self, kind: str, url: str) -> requests.Response | None:
        began = time.monotonic()
        start = time.perf_counter()
        try:
            response = self.session.get(url, timeout=TIMEOUT, verify=False)
            response.content  # noqa: B018 (the body is part of the request's latency)
            elapsed, status = time.perf_counter() - start, str(response.status_code)
        except requests.RequestException as exc:
            response, elapsed, status = None, time.perf_counter() - start, type(exc).__name__
        if self.start <= began < self.end:
            self.latencies[kind].append(elapsed * 1000)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if response is None or response.status_code != 200:
                self.failed[kind] += 1
        return response if response is not None and response.status_code == 200 else None

    def step(self) -> None:
        response = self.get("playlist", self.playlist_url)
        parsed = parse_playlist(response.text) if response is not None else None
        if not parsed or not parsed[1]:
            return
        first, uris = parsed
        newest = first + len(uris) - 1
        if self.next_sequence is None or newest < self.next_sequence - 10:
            # Start at the newest segment, as a live player joining does; a sequence far behind is a camera restart.
            self.restarts += self.next_sequence is not None
            self.next_sequence = newest
        # Segments that already left the playlist are gone: the caller counts them as missed.
        for offset, uri in enumerate(uris):
            sequence = first + offset
            if sequence < self.next_sequence:
                continue
            if self.get("segment", urljoin(self.playlist_url, uri)) is not None:
                self.fetched.add(sequence)
            self.next_sequence = sequence + 1

    def run(self, poll: float) -> None:
        while time.monotonic() < self.stop:
            began = time.monotonic()
            self.step()
            time.sleep(max(0.0, min(poll - (time.monotonic() - began), self.stop - time.monotonic())))


def summary(values: list[float]) -> dict:
    if not values:
        return {"requests": 0}
    ordered = sorted(values)

    def rank(fraction: float) -> float:  # nearest rank: a value that was measured
        return round(ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))], 1)

    return {"requests": len(ordered), "p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": round(ordered[-1], 1)}


def command_play(args: argparse.Namespace, password: str) -> int:
    session = requests.Session()
    if args.auth == "basic":
        session.auth = (args.user, password)  # requests sends it on every request, as a browser does after the first 401
        playlist = f"/hls/{args.camera}/index.m3u8"
    else:
        response, _ = login(session, args.base, args.user, password)
        if response.status_code != 200:
            print(json.dumps({"error": f"login answered {response.status_code}"}), flush=True)
            return 1
        playlist = playlist_path(args.base, response.json(), args.camera)
    now = time.monotonic()
    window = (now + args.warmup, now + args.warmup + args.seconds)
    # CLOCK_MONOTONIC is the machine's, not the namespace's: the caller reads the live edge on the host at these moments.
    print(f"ready {window[0]:.3f} {window[1]:.3f}", flush=True)
    player = Player(session, args.base + playlist, window, args.grace)
    second_login: dict = {}
    thread = None
    if args.auth == "token":
        # A second login mid-window, from this address (which is not flooding): does the login service still answer, and how fast?
        def late_login() -> None:
            time.sleep(args.warmup + args.seconds / 2)
            try:
                response, elapsed = login(requests.Session(), args.base, args.user, password)
                second_login.update(status=response.status_code, ms=round(elapsed * 1000, 1))
            except requests.RequestException as exc:
                second_login.update(status=type(exc).__name__, ms=None)

        thread = threading.Thread(target=late_login, daemon=True)
        thread.start()
    player.run(args.poll)
    if thread:
        thread.join(timeout=TIMEOUT + 1)
    everything = player.latencies["playlist"] + player.latencies["segment"]
    print(
        json.dumps(
            {
                "all": summary(everything),
                "playlist": summary(player.latencies["playlist"]),
                "segment": summary(player.latencies["segment"]),
                "failed_requests": player.failed["playlist"] + player.failed["segment"],
                "fetched_sequences": sorted(player.fetched),
                "camera_restarts": player.restarts,
                "statuses": player.statuses,
                "second_login": second_login or None,
            }
        ),
        flush=True,
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("login", "play"))
    parser.add_argument("base", help="https://HOST[:PORT]")
    parser.add_argument("user")
    parser.add_argument("--camera", default="testcam")
    parser.add_argument("--auth", choices=("token", "basic"), default="token")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of playing before measuring")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between playlist fetches")
    parser.add_argument("--grace", type=float, default=3, help="seconds of playing after the window, to fetch its last segments")
    args = parser.parse_args()
    password = sys.stdin.readline().rstrip("\n")
    return command_login(args, password) if args.command == "login" else command_play(args, password)


if __name__ == "__main__":
    raise SystemExit(main())
