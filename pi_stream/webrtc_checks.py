"""What verify and status ask of OvenMediaEngine: its streams and sessions (its API, on the Pi) and its signalling (through nginx).

The API listens on the Pi and wants the access token the role made there
(/etc/pi-stream/ome/api.env, root only), so it is asked on the Pi itself, by
the Pi's python3 over the same SSH as every other host check: the token never
leaves the Pi. Signalling is asked the way a browser asks it: a WebSocket to
/webrtc/CAMERA/ through nginx, with the camera's token cookie, and OME's
`request_offer`; the offer must send the browser to the TCP relay.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

from pi_stream.render import DEFAULT_PATHS, OME_API_TOKEN_ENV, OME_APP
from pi_stream.site.webrtc import OME_API_PORT

SIGNALLING_TIMEOUT_SECONDS = 10.0
# OME publishes a video-only RTMP stream after 250 frames (it waits for audio): 25 s at 10 fps. Right after a
# deploy that restarted a camera or OME, verify waits up to this long for every stream before it fails.
STREAMS_SETTLE_SECONDS = 60.0

def api_query(env_file: str = DEFAULT_PATHS["ome_env"], port: int = OME_API_PORT) -> str:
    """Code for the Pi's python3 (stdlib only): prints {"streams": {camera: WebRTC sessions}} or {"error": ...}."""
    return API_QUERY_TEMPLATE.replace("ENV_FILE", repr(env_file)).replace("API_PORT", str(port))


API_QUERY_TEMPLATE = f"""
import base64, json, sys, urllib.request
token = ""
for line in open(ENV_FILE):
    if line.startswith("{OME_API_TOKEN_ENV}="):
        token = line.split("=", 1)[1].strip()
auth = {{"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}}
base = "http://127.0.0.1:API_PORT/v1"
def get(path):
    request = urllib.request.Request(base + path, headers=auth)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["response"]
try:
    names = get("/vhosts/default/apps/{OME_APP}/streams")
    streams = {{}}
    for name in names:
        stats = get(f"/stats/current/vhosts/default/apps/{OME_APP}/streams/{{name}}")
        streams[name] = stats.get("connections", {{}}).get("webrtc", 0)
    print(json.dumps({{"streams": streams}}))
except Exception as exc:
    print(json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}}))
"""


def ome_streams(remote) -> dict[str, Any]:
    """{"streams": {camera: WebRTC sessions}} from OME's API on the Pi, or {"error": ...}."""
    result = remote.run("python3 -c %s", api_query())
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {"error": (result.stderr or result.stdout).strip()[-300:] or f"exit code {result.rc}"}


def streams_check(answer: dict[str, Any], expected: list[str]) -> tuple[bool, str]:
    """Every camera offered over WebRTC is a stream in OME (nginx's push reached it)."""
    if "error" in answer:
        return False, f"OME's API: {answer['error']}"
    streams = answer["streams"]
    missing = [name for name in expected if name not in streams]
    sessions = ", ".join(f"{name} {streams[name]}" for name in expected if name in streams)
    detail = f"WebRTC sessions: {sessions}" if sessions else "no stream"
    return not missing, detail + (f"; missing: {', '.join(missing)} (is nginx pushing? see `journalctl -u nginx`)" if missing else "")


def streams_settled(ask: Callable[[], dict[str, Any]], expected: list[str], seconds: float = STREAMS_SETTLE_SECONDS,
                    interval: float = 2.0, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """streams_check, asked again until every stream is there or `seconds` are up (an API error fails at once)."""
    deadline = clock() + seconds
    while True:
        answer = ask()
        ok, detail = streams_check(answer, expected)
        if ok or "error" in answer:
            return ok, detail
        if clock() >= deadline:
            return False, f"{detail}; waited {seconds:g} s (OME publishes a stream 250 frames after it starts)"
        sleep(interval)


def signalling_offer(url: str, cookie: str, ssl_context: ssl.SSLContext | None, relay: str,
                     timeout: float = SIGNALLING_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """A WebSocket to nginx's /webrtc/CAMERA/ answers `request_offer` with an SDP offer that points at the TCP relay."""
    return asyncio.run(_signalling_offer(url, cookie, ssl_context, relay, timeout))


async def _signalling_offer(url: str, cookie: str, ssl_context: ssl.SSLContext | None, relay: str, timeout: float) -> tuple[bool, str]:
    import websockets

    headers = {"Cookie": cookie} if cookie else {}
    tls = ssl_context if url.startswith("wss://") else None  # websockets refuses a context for ws://
    if cookie and tls is not None and tls.verify_mode == ssl.CERT_NONE:
        # The cookie is a viewer's token: it goes only to a server whose certificate was checked.
        return False, "token not sent: the TLS context checks no certificate (use verify.ssl_context_of a pinned session)"
    try:
        async with asyncio.timeout(timeout):
            async with websockets.connect(url, additional_headers=headers, ssl=tls, open_timeout=timeout) as ws:
                await ws.send(json.dumps({"command": "request_offer"}))
                offer = json.loads(await ws.recv())
    except websockets.InvalidStatus as exc:
        return False, f"HTTP {exc.response.status_code} from nginx"
    except (OSError, TimeoutError, websockets.WebSocketException, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if offer.get("command") != "offer" or "sdp" not in offer:
        return False, f"no offer: {json.dumps(offer)[:200]}"
    urls = [u for server in offer.get("iceServers", []) for u in server.get("urls", [])]
    wanted = f"turn:{relay}?transport=tcp"
    return wanted in urls, f"offer with {wanted}" if wanted in urls else f"offer, but its relays are {urls or 'none'} (expected {wanted})"


def refused_without_token(url: str, ssl_context: ssl.SSLContext | None) -> tuple[bool, str]:
    ok, detail = signalling_offer(url, "", ssl_context, relay="-")
    return (not ok and detail.startswith("HTTP 401")), detail
