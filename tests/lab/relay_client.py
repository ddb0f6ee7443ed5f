"""A remote viewer's plain HTTP side for tests/lab/test_relay.py, run inside the viewer's network namespace.

  python -m tests.lab.relay_client reach URL
      prints the HTTP status of GET URL, or "unreachable" (connect timeout 3 s)
  python -m tests.lab.relay_client login URL USER PASSWORD [PATH]
      prints the status of a login at URL's /auth/login (or at PATH, e.g. a relay route's /_pi_stream/auth/login)
  python -m tests.lab.relay_client route URL USER PASSWORD PATH [PI_USER PI_PASSWORD PI_PATH]
      a relay's route to a Pi (relay.admins): PATH before and after the relay's own login at
      /_pi_stream/auth/login, then, if given, the Pi's own login through it and PI_PATH;
      prints {"before", "location", "gate", "after", "page", "pi_login", "pi_path"} as JSON
  python -m tests.lab.relay_client proxy URL ASSERTION [CAMERA]
      an identity-aware proxy's login, as Cloudflare Access forwards one: POST URL's /auth/proxy with the
      signed assertion in Cf-Access-Jwt-Assertion; then, if given, CAMERA's playlist and newest segment with
      the cookies it set; prints {"status", "user", "cameras", "cookies": {"NAME PATH": VALUE}, "playlist",
      "segment", "segment_bytes"} as JSON
  python -m tests.lab.relay_client proxy-route URL ASSERTION PATH
      a relay's route to a Pi (relay.admins) by identity: PATH before and after the relay's own proxy login
      at /_pi_stream/auth/proxy; prints {"before", "location", "gate", "after", "page", "cookies": [NAME...]} as JSON
  python -m tests.lab.relay_client fetch URL PATH [NAME=VALUE ...]
      prints the status of GET URL's PATH with those cookies alone (a kept cookie, tried again later)
  python -m tests.lab.relay_client pull URL USER PASSWORD CAMERA VIEWERS SECONDS
      logs in, takes a player link, then VIEWERS players fetch its playlist and every
      new segment, as hls.js does, for SECONDS; prints {"viewers", "bytes", "segments"} as JSON

Each loop is bounded by SECONDS (at most 120) and stops by itself. The lab's
certificates are self-signed: nothing here checks them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse

import requests
import urllib3

from pi_stream.verify import Http

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
MAX_SECONDS = 120
ASSERTION_HEADER = "Cf-Access-Jwt-Assertion"


def session() -> requests.Session:
    # Http passes verify=False on every request: a plain Session would let REQUESTS_CA_BUNDLE override it.
    http = Http()
    http.verify = False
    return http


def reach(url: str) -> str:
    try:
        return str(session().get(url, timeout=(3, 5)).status_code)
    except requests.RequestException:
        return "unreachable"


def login(http: requests.Session, url: str, user: str, password: str, path: str = "/auth/login") -> int:
    return http.post(urllib.parse.urljoin(url, path), json={"user": user, "password": password}, timeout=15).status_code


def proxy_login(http: requests.Session, url: str, assertion: str, path: str = "/auth/proxy") -> requests.Response:
    return http.post(urllib.parse.urljoin(url, path), json={}, headers={ASSERTION_HEADER: assertion}, timeout=15)


def playlist_and_segment(http: requests.Session, url: str, camera: str) -> dict:
    """The camera's playlist, then its newest segment, with the session's cookies: what a player fetches first."""
    playlist = http.get(urllib.parse.urljoin(url, f"/hls/{camera}/index.m3u8"), timeout=15)
    seen = {"playlist": playlist.status_code, "segment": 0, "segment_bytes": 0}
    segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")] if playlist.ok else []
    if segments:
        segment = http.get(urllib.parse.urljoin(playlist.url, segments[-1]), timeout=15)
        seen.update(segment=segment.status_code, segment_bytes=len(segment.content))
    return seen


def player_link(http: requests.Session, url: str, camera: str) -> str:
    response = http.post(urllib.parse.urljoin(url, "/auth/link"), json={"camera": camera}, timeout=15)
    response.raise_for_status()
    # The link names the host the request came to; the relay's address is what this viewer dials.
    return urllib.parse.urljoin(url, urllib.parse.urlsplit(response.json()["url"]).path)


def pull(playlist: str, seconds: float, totals: dict, lock: threading.Lock) -> None:
    http = session()
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            text = http.get(playlist, timeout=5).text
            fetched = 0
            for line in text.splitlines():
                if line and not line.startswith("#") and line not in seen:
                    seen.add(line)
                    fetched += len(http.get(urllib.parse.urljoin(playlist, line), timeout=5).content)
                    with lock:
                        totals["segments"] += 1
            with lock:
                totals["bytes"] += fetched
        except requests.RequestException:
            pass
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "reach":
        print(reach(args[0]))
        return 0
    http = session()
    if command == "login":
        print(login(http, *args[:4]))
        return 0
    if command == "route":
        url, user, password, path, *pi = args
        before = http.get(urllib.parse.urljoin(url, path), allow_redirects=False, timeout=15)
        gate = http.post(urllib.parse.urljoin(url, "/_pi_stream/auth/login"), json={"user": user, "password": password}, timeout=15)
        after = http.get(urllib.parse.urljoin(url, path), allow_redirects=False, timeout=15)
        result = {"before": before.status_code, "location": before.headers.get("Location", ""), "gate": gate.status_code,
                  "after": after.status_code, "page": after.text[:4000]}
        if pi:
            pi_user, pi_password, pi_path = pi
            result["pi_login"] = login(http, url, pi_user, pi_password)
            result["pi_path"] = http.get(urllib.parse.urljoin(url, pi_path), timeout=15).text[:4000]
        print(json.dumps(result))
        return 0
    if command == "proxy":
        url, assertion, *camera = args
        answer = proxy_login(http, url, assertion)
        body = answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else {}
        result = {"status": answer.status_code, "user": body.get("user", ""), "cameras": [c["name"] for c in body.get("cameras", [])],
                  "cookies": {f"{c.name} {c.path}": c.value for c in http.cookies}}
        if camera and answer.ok:
            result.update(playlist_and_segment(http, url, camera[0]))
        print(json.dumps(result))
        return 0
    if command == "proxy-route":
        url, assertion, path = args
        before = http.get(urllib.parse.urljoin(url, path), allow_redirects=False, timeout=15)
        gate = proxy_login(http, url, assertion, "/_pi_stream/auth/proxy")
        after = http.get(urllib.parse.urljoin(url, path), allow_redirects=False, timeout=15)
        print(json.dumps({"before": before.status_code, "location": before.headers.get("Location", ""), "gate": gate.status_code,
                          "after": after.status_code, "page": after.text[:4000], "cookies": sorted(c.name for c in http.cookies)}))
        return 0
    if command == "fetch":
        url, path, *cookies = args
        jar = dict(cookie.split("=", 1) for cookie in cookies)
        print(http.get(urllib.parse.urljoin(url, path), cookies=jar, allow_redirects=False, timeout=15).status_code)
        return 0
    if command == "pull":
        url, user, password, camera, viewers, seconds = args
        if login(http, url, user, password) != 200:
            print(json.dumps({"error": "login refused"}))
            return 1
        playlist = player_link(http, url, camera)
        totals = {"bytes": 0, "segments": 0}
        lock = threading.Lock()
        threads = [
            threading.Thread(target=pull, args=(playlist, min(float(seconds), MAX_SECONDS), totals, lock), daemon=True)
            for _ in range(int(viewers))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(MAX_SECONDS + 30)
        print(json.dumps({"viewers": int(viewers), **totals}))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
