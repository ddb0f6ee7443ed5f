"""The fake Hikvision-style DVR (pi_stream/lab/fake_dvr.py) on loopback, without the lab.

It runs in the host's namespace on 127.0.0.1 with ports the OS picks; every
wait is bounded. The DVR proxy's lab tests rely on what is pinned here: the
absolute http:// redirect the proxy must rewrite, the page's hard-coded
WebSocket ports, validators without Cache-Control, a 401 without
WWW-Authenticate, and a WebSocket that streams numbered frames until closed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import re
import time
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from pi_stream.errors import LabError
from pi_stream.lab.dvr import FakeDvr, fake_dvr
from tests.conftest import wait_until

PASSWORD = "s3cret:/@x"  # a colon in the password: Basic splits at the first one only
FPS = 25


@pytest.fixture
def start_dvr(tmp_path: Path):
    """Start fake DVRs on 127.0.0.1 and free ports; all are stopped after the test."""
    numbers = itertools.count(1)
    with contextlib.ExitStack() as stack:

        def start(directory: Path | None = None, **options) -> FakeDvr:
            options = {"fps": FPS, "static_kib": 64, **options}
            where = directory or tmp_path / f"dvr{next(numbers)}"
            return stack.enter_context(fake_dvr([], "127.0.0.1", 0, 0, "admin", PASSWORD, where, **options))

        yield start


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(dvr: FakeDvr, path: str, **kwargs) -> requests.Response:
    return requests.get(dvr.url(path), allow_redirects=False, timeout=10, **kwargs)


def receive(connection: ClientConnection, seconds: float) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            frames.append(connection.recv(timeout=remaining))
    return frames


def test_root_redirects_to_an_absolute_http_location_with_the_requests_host(start_dvr):
    dvr = start_dvr()
    response = get(dvr, "/", headers={"Host": "pi.example:8443", "X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "https"})
    assert response.status_code == 302
    assert response.headers["Location"] == "http://pi.example:8443/doc/page/login.asp"
    assert response.headers["Server"] == "App-webs/"

    (record,) = dvr.requests_for("/")
    assert (record.method, record.status, record.host) == ("GET", 302, "pi.example:8443")
    assert (record.x_forwarded_for, record.x_forwarded_proto, record.cookies) == ("192.0.2.7", "https", ())


def test_login_page_loads_its_scripts_which_hard_code_the_websocket_ports(start_dvr):
    dvr = start_dvr(static_kib=100)
    page = get(dvr, "/doc/page/login.asp")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for needle in ('src="/doc/script/lib.js"', 'src="/doc/script/webvideo.js"', 'href="/doc/css/ui.css"', 'src="/doc/images/logo.png"'):
        assert needle in page.text
    for element in ('id="username"', 'id="password"', 'id="login"', 'id="login-result"', 'id="video-status"'):
        assert element in page.text
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/doc/script/lib.js">', '<script src="/doc/script/webvideo.js">']
    assert "</script>\n<script" in page.text and not re.search(r"<script[^>]*>[^<]", page.text), "no inline script"

    script = get(dvr, "/doc/script/webvideo.js")
    assert script.headers["Content-Type"] == "application/javascript"
    assert "(tls ? 'wss://' : 'ws://')" in script.text and "(tls ? 7682 : 7681)" in script.text
    assert "binaryType = 'arraybuffer'" in script.text and "/ISAPI/Security/userCheck" in script.text
    lib = get(dvr, "/doc/script/lib.js")
    assert len(lib.content) == 100 * 1024 and lib.text.startswith("/*") and lib.text.count("*/") == 1
    assert get(dvr, "/doc/css/ui.css").headers["Content-Type"] == "text/css"
    logo = get(dvr, "/doc/images/logo.png")
    assert logo.headers["Content-Type"] == "image/png" and logo.content.startswith(b"\x89PNG\r\n\x1a\n")

    assert dvr.stats().requests == {
        "/doc/page/login.asp": 1,
        "/doc/script/webvideo.js": 1,
        "/doc/script/lib.js": 1,
        "/doc/css/ui.css": 1,
        "/doc/images/logo.png": 1,
    }


def test_static_files_have_validators_without_cache_control_and_revalidate_with_304(start_dvr):
    dvr = start_dvr()
    first = get(dvr, "/doc/script/lib.js")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Last-Modified"].endswith(" GMT")
    assert "Cache-Control" not in first.headers, "the firmware leaves caching to the proxy"

    again = get(dvr, "/doc/script/lib.js", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    assert get(dvr, "/doc/script/lib.js", headers={"If-None-Match": '"other"'}).status_code == 200
    assert [record.status for record in dvr.requests_for("/doc/script/lib.js")] == [200, 304, 200]
    assert get(dvr, "/doc/nothing.js").status_code == 404


def test_user_check_sets_a_session_cookie_or_answers_401_without_a_dialog(start_dvr):
    dvr = start_dvr()
    ok = get(dvr, "/ISAPI/Security/userCheck", headers=basic("admin", PASSWORD))
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("application/xml")
    assert "<statusValue>200</statusValue><statusString>OK</statusString>" in ok.text
    assert re.fullmatch(r"WebSession=[0-9a-f]{32}; path=/; HttpOnly", ok.headers["Set-Cookie"])

    for headers in (basic("admin", "wrong"), basic("root", PASSWORD), {"Authorization": "Basic !!"}, {}):
        refused = get(dvr, "/ISAPI/Security/userCheck", headers=headers)
        assert refused.status_code == 401 and "<statusValue>401</statusValue>" in refused.text
        assert "WWW-Authenticate" not in refused.headers, "a challenge would make browsers pop up their own dialog"

    get(dvr, "/doc/page/login.asp", headers={"Cookie": f"WebSession={ok.cookies['WebSession']}; lang=en"})
    stats = dvr.stats()
    assert (stats.logins.ok, stats.logins.failed) == (1, 4)
    assert stats.requests["/ISAPI/Security/userCheck"] == 5
    assert dvr.requests_for("/doc/page/login.asp")[0].cookies == ("WebSession", "lang")


def test_a_64_kib_post_to_isapi_is_read_whole(start_dvr):
    dvr = start_dvr()
    body = bytes(range(256)) * 256
    response = requests.post(dvr.url("/ISAPI/System/Network/interfaces"), data=body, timeout=10)
    assert response.status_code == 200 and "<received>65536</received>" in response.text
    assert requests.post(dvr.url("/elsewhere"), data=b"x" * 2000, timeout=10).status_code == 404
    (record,) = dvr.requests_for("/ISAPI/System/Network/interfaces")
    assert (record.method, record.status) == ("POST", 200)


def test_the_websocket_streams_numbered_frames_at_the_frame_rate(start_dvr):
    dvr = start_dvr(frame_bytes=1000)
    with connect(dvr.ws_url(), additional_headers={"Cookie": "WebSession=abc"}, compression=None, open_timeout=10) as ws:
        ws.send("ignored by the DVR")
        frames = receive(ws, 2.0)
        stats = dvr.stats()
    assert all(len(frame) == 1000 for frame in frames)
    assert [int.from_bytes(frame[:8], "big") for frame in frames] == list(range(len(frames)))
    assert 2 * FPS * 0.8 <= len(frames) <= 2 * FPS * 1.2 + 1, f"{len(frames)} frames in 2 s at {FPS} fps"
    (record,) = stats.websockets
    assert (record.path, record.host, record.cookies, record.open) == (
        "/websocket/stream?channel=1",
        f"127.0.0.1:{dvr.ws_port}",
        ("WebSession",),
        True,
    )
    assert record.frames >= len(frames) and record.closed is None

    wait_until(lambda: not dvr.stats().open_websockets, "the closed WebSocket to be seen", 5)
    (record,) = dvr.stats().websockets
    assert record.closed is not None and record.closed >= record.opened


def test_close_websockets_ends_every_stream_and_reset_keeps_the_open_ones(start_dvr):
    dvr = start_dvr()
    with connect(dvr.ws_url(), open_timeout=10) as first, connect(dvr.ws_url("/other"), open_timeout=10) as second:
        wait_until(lambda: len(dvr.stats().open_websockets) == 2, "two WebSockets", 5)
        assert dvr.close_websockets() == 2
        for ws in (first, second):
            with pytest.raises(ConnectionClosed):
                receive(ws, 5)
            assert ws.close_code == 1001
    wait_until(lambda: not dvr.stats().open_websockets, "both WebSockets to be closed", 5)
    assert dvr.close_websockets() == 0

    get(dvr, "/")
    with connect(dvr.ws_url(), open_timeout=10) as third:
        receive(third, 0.3)
        dvr.reset()
        stats = dvr.stats()
        assert (stats.requests, stats.recent, stats.logins.ok, stats.logins.failed) == ({}, (), 0, 0)
        (still_open,) = stats.websockets
        assert still_open.open and still_open.frames <= 2, "reset counts the open one's frames from 0"


def test_the_password_is_in_neither_argv_nor_the_log_and_a_long_directory_still_works(start_dvr, tmp_path):
    directory = tmp_path / ("d" * 90)  # a control socket path past sun_path's 108 bytes
    dvr = start_dvr(directory=directory)
    assert not str(dvr.control_path).startswith(str(directory))
    assert get(dvr, "/ISAPI/Security/userCheck", headers=basic("admin", PASSWORD)).status_code == 200
    assert dvr.ref is not None
    cmdline = Path(f"/proc/{dvr.ref.pid}/cmdline").read_bytes()
    assert b"s3cret" not in cmdline and "s3cret" not in " ".join(dvr.argv())
    assert not dvr.password_file.exists(), "the file goes once the DVR has read it"
    dvr.stop()
    assert "s3cret" not in dvr.log.read_text()
    assert "ready" in dvr.log.read_text().splitlines()


def test_a_dvr_that_cannot_listen_fails_to_start_with_its_log(start_dvr, tmp_path):
    taken = start_dvr().http_port
    with pytest.raises(LabError, match="exited at start(.|\n)*could not listen"):
        fake_dvr([], "127.0.0.1", taken, 0, "admin", PASSWORD, tmp_path / "second").start()
