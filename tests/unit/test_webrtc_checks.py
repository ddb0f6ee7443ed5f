"""verify's and status's questions to OvenMediaEngine, against a fake of its API and a fake signalling server."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import subprocess
import threading

import pytest

from pi_stream.status import HostStatus, format_host, webrtc_summary
from pi_stream.webrtc_checks import api_query, refused_without_token, signalling_offer, streams_check, streams_settled

TOKEN = "f00d" * 12


class FakeOmeApi(http.server.BaseHTTPRequestHandler):
    """OME's /v1 API as far as verify reads it: the app's streams, and each stream's connections."""

    streams = {"barn": 2, "gate": 0}

    def do_GET(self):
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(TOKEN.encode()).decode():
            self.send_error(401)
            return
        prefix = "/v1/stats/current/vhosts/default/apps/pi-stream/streams/"
        if self.path == "/v1/vhosts/default/apps/pi-stream/streams":
            body = {"statusCode": 200, "response": list(self.streams)}
        elif self.path.startswith(prefix) and self.path[len(prefix):] in self.streams:
            body = {"statusCode": 200, "response": {"connections": {"webrtc": self.streams[self.path[len(prefix):]], "llhls": 0}}}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeOmeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def query(env_file, port) -> dict:
    """The code verify sends to the Pi, run by this machine's system python3, as the Pi's would."""
    result = subprocess.run(["/usr/bin/python3", "-c", api_query(str(env_file), port)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def test_streams_and_sessions_come_from_omes_api_with_the_pis_token(api, tmp_path):
    env = tmp_path / "api.env"
    env.write_text(f"PI_STREAM_OME_API_TOKEN={TOKEN}\n")
    answer = query(env, api)
    assert answer == {"streams": {"barn": 2, "gate": 0}}
    assert streams_check(answer, ["barn", "gate"]) == (True, "WebRTC sessions: barn 2, gate 0")
    ok, detail = streams_check(answer, ["barn", "yard"])
    assert not ok and "missing: yard" in detail and "nginx" in detail


def test_a_wrong_token_is_an_error_not_a_crash(api, tmp_path):
    env = tmp_path / "api.env"
    env.write_text("PI_STREAM_OME_API_TOKEN=wrong\n")
    answer = query(env, api)
    assert "HTTP Error 401" in answer["error"]
    ok, detail = streams_check(answer, ["barn"])
    assert not ok and detail.startswith("OME's API: HTTPError")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_verify_waits_for_a_stream_ome_has_not_published_yet_and_gives_up_in_time():
    """Right after a camera (re)starts, OME publishes it 250 frames later: asked again, not failed at once."""
    clock = FakeClock()
    answers = iter([{"streams": {"barn": 0}}, {"streams": {"barn": 0}}, {"streams": {"barn": 0, "gate": 1}}])
    ok, detail = streams_settled(lambda: next(answers), ["barn", "gate"], seconds=30, interval=2, clock=clock, sleep=clock.sleep)
    assert ok and detail == "WebRTC sessions: barn 0, gate 1" and clock.now == 4
    clock = FakeClock()
    ok, detail = streams_settled(lambda: {"streams": {}}, ["gate"], seconds=10, interval=2, clock=clock, sleep=clock.sleep)
    assert not ok and "missing: gate" in detail and "waited 10 s" in detail and clock.now == 10
    clock = FakeClock()
    ok, detail = streams_settled(lambda: {"error": "URLError: refused"}, ["gate"], seconds=10, clock=clock, sleep=clock.sleep)
    assert not ok and clock.now == 0, "an API that does not answer fails at once"


def test_status_shows_viewers_per_camera_and_what_ome_lacks():
    assert webrtc_summary({"streams": {"barn": 1, "gate": 3}}, ("barn", "gate")) == "barn 1 viewer, gate 3 viewers"
    assert "NOT IN OME: yard" in webrtc_summary({"streams": {"barn": 0}}, ("barn", "yard"))
    assert webrtc_summary({"error": "URLError: refused"}, ("barn",)).startswith("unknown: URLError: refused")
    text = format_host(HostStatus("pi1", webrtc={"streams": {"barn": 2}}, webrtc_cameras=("barn",)))
    assert "  WebRTC (OvenMediaEngine): barn 2 viewers" in text.splitlines()


def fake_signalling(answer: dict | None, status: int = 101):
    """A WebSocket server that answers request_offer as OME does (or refuses the upgrade with `status`)."""
    import websockets
    from websockets.http11 import Response

    def refuse(connection, request):
        if status != 101:
            return Response(status, "refused", websockets.Headers(), b"")
        return None

    async def handler(ws):
        request = json.loads(await ws.recv())
        assert request == {"command": "request_offer"}
        await ws.send(json.dumps(answer))

    return websockets.serve(handler, "127.0.0.1", 0, process_request=refuse)


def run_probe(answer: dict | None, relay: str, status: int = 101, cookie: str = "pi_stream_media=x"):
    async def main():
        async with fake_signalling(answer, status) as server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.to_thread(signalling_offer, f"ws://127.0.0.1:{port}/webrtc/barn/", cookie, None, relay)

    return asyncio.run(main())


OFFER = {"command": "offer", "id": 1, "sdp": {"type": "offer", "sdp": "v=0"}, "candidates": [],
         "iceServers": [{"urls": ["turn:cam.example.org:3478?transport=tcp"], "username": "ome", "credential": "x"}]}


def test_an_offer_must_send_the_browser_to_the_relay():
    assert run_probe(OFFER, "cam.example.org:3478") == (True, "offer with turn:cam.example.org:3478?transport=tcp")
    ok, detail = run_probe(OFFER, "192.0.2.10:3478")
    assert not ok and "expected turn:192.0.2.10:3478?transport=tcp" in detail
    ok, detail = run_probe({"command": "error", "code": 404}, "cam.example.org:3478")
    assert not ok and detail.startswith("no offer")


def test_signalling_without_a_token_must_be_refused_by_nginx():
    async def main(status):
        async with fake_signalling(OFFER, status) as server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.to_thread(refused_without_token, f"ws://127.0.0.1:{port}/webrtc/barn/", None)

    assert asyncio.run(main(401)) == (True, "HTTP 401 from nginx")
    ok, detail = asyncio.run(main(101))
    assert not ok  # OME answered a browser with no token: the check fails
