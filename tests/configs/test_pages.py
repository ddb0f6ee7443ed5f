"""The replay and status pages in headless Chromium, against a fake camera API.

The pages are rendered by the project's renderer and served with the Content-Security-Policy
of the rendered headers.conf, so an inline script or style would show up as a console error.
The API (session, status.json, latest.jpg, nginx autoindex JSON listings, snapshots,
recordings) is faked in-process; nothing here needs the lab.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.browser import headless_chromium
from tests.conftest import EXAMPLE_SITES, wait_until, write_site

pytestmark = pytest.mark.browser

WWW = "var/www/pi-stream/"
DAY = "2026-11-23"
OLDER_DAY = "2026-11-22"
# 200 frames, one every 4 s from 10:00:00: enough that loading them all would show in the request log.
STAMPS = [f"{10 + s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}" for s in range(0, 800, 4)]
SESSION_CAMERAS = [
    {"name": "door", "title": "Front door", "playlist": "/hls/door/index.m3u8"},
    {"name": "yard", "title": "Yard <b>east</b>", "playlist": "/hls/yard/index.m3u8"},
    {"name": "gate", "title": "Gate", "playlist": "/hls/gate/index.m3u8"},
]


def status_for(camera: str, now: float) -> dict:
    nvr = {"name": "shed", "sessions_in_use": 8, "max_sessions": 8}
    base = {
        "camera": camera, "title": camera, "since": now - 300, "codec": "h264", "fps": 15.0, "bitrate_kbps": 812.3,
        "last_error": None, "last_error_at": None, "retry_at": None, "failures": 0, "sessions_opened": 3, "priority": 50,
        "nvr": nvr, "snapshots": {"interval_seconds": 4, "latest_at": now - 2, "writing": True, "detail": ""},
        "recording": {"enabled": True, "writing": True, "detail": ""},
        "disk": {"path": "/srv/pi-stream/snapshots", "free_percent": 42.0, "writing": True}, "updated": now - 1,
    }
    if camera == "door":
        return {**base, "state": "live", "detail": "streaming"}
    if camera == "yard":
        return {
            **base, "state": "backing_off", "codec": "hevc", "fps": None, "bitrate_kbps": None,
            # Markup in a detail must reach the page as text.
            "detail": "over the NVR's session budget: 8 of 8 sessions in use <b>by higher-priority cameras</b>",
            "last_error": "RTSP 453 Not Enough Bandwidth", "last_error_at": now - 20, "retry_at": now + 25, "failures": 4,
            "priority": 10, "recording": {"enabled": False, "writing": False, "detail": ""},
            "snapshots": {"interval_seconds": 4, "latest_at": now - 3, "writing": False, "detail": "paused: disk below 10% free"},
        }
    # gate: the supervisor stopped writing two minutes ago; it keeps only its latest picture (no snapshot directory).
    return {**base, "state": "live", "detail": "streaming", "nvr": None, "updated": now - 120,
            "snapshots": {"interval_seconds": 4, "latest_at": now - 125, "writing": False, "detail": ""},
            "recording": {"enabled": True, "writing": False, "detail": "starts with the camera"}}


class FakeApi:
    """The appliance's API as the pages see it; records every path asked for."""

    def __init__(self, www: Path, csp: str, full_jpeg: bytes, thumb_jpeg: bytes, mp4: bytes):
        self.www, self.csp = www, csp
        self.full_jpeg, self.thumb_jpeg, self.mp4 = full_jpeg, thumb_jpeg, mp4
        self.logged_in = True
        self.session_refusal = 401  # /auth/session's answer when not logged in: 403 for a cookie that no longer passes
        self.camera_refusal: int | None = None  # e.g. 410: the camera paths refuse while the session is fine
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def count(self, pattern: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if re.search(pattern, path))

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/replay.html", "/status.html") or path.startswith("/static/"):
            file = self.www / path.lstrip("/")
            if ".." in path or not file.is_file():
                return 404, "text/plain", b"not found"
            types = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
            return 200, types.get(file.suffix, "application/octet-stream"), file.read_bytes()
        if path == "/auth/session":
            if not self.logged_in:
                return json_answer(self.session_refusal, {"error": "not logged in"})
            return json_answer(200, {"user": "alice", "cameras": SESSION_CAMERAS, "expires": int(time.time()) + 3600})
        match = re.fullmatch(r"/camera/([a-z0-9_-]+)/(.*)", path)
        if not match:
            return 404, "text/plain", b"not found"
        camera, rest = match.groups()
        if not self.logged_in:
            return json_answer(401, {"error": "not logged in"})
        if self.camera_refusal:
            return self.camera_refusal, "text/html", b"<html>refused</html>"
        if camera not in {c["name"] for c in SESSION_CAMERAS}:
            return 403, "text/plain", b"forbidden"
        if rest == "status.json":
            return json_answer(200, status_for(camera, time.time()))
        if rest == "latest.jpg":
            return 200, "image/jpeg", self.full_jpeg
        if rest == "latest.thumb.jpg":
            return 200, "image/jpeg", self.thumb_jpeg
        mtime = "Mon, 23 Nov 2026 10:15:02 GMT"
        if rest == "snapshots/":
            days = [{"name": n, "type": "directory", "mtime": mtime} for n in (OLDER_DAY, DAY, "lost+found", "2026-1-1")]
            return json_answer(200, days + [{"name": "2026-11-24", "type": "file", "mtime": mtime, "size": 1}])
        if rest == f"snapshots/{DAY}/":
            files = []
            for stamp in STAMPS:
                files += [{"name": f"{stamp}.jpg", "type": "file", "mtime": mtime, "size": 48211},
                          {"name": f"{stamp}.thumb.jpg", "type": "file", "mtime": mtime, "size": 9000}]
            files += [{"name": n, "type": "file", "mtime": mtime, "size": 1} for n in ("evil<img>.jpg", "1.jpg", "x.mp4")]
            return json_answer(200, files)
        if rest == f"snapshots/{OLDER_DAY}/":
            return json_answer(200, [{"name": "235956.jpg", "type": "file", "mtime": mtime, "size": 48211}])
        if re.fullmatch(r"snapshots/\d{4}-\d{2}-\d{2}/\d{6}\.thumb\.jpg", rest):
            return 200, "image/jpeg", self.thumb_jpeg
        if re.fullmatch(r"snapshots/\d{4}-\d{2}-\d{2}/\d{6}\.jpg", rest):
            return 200, "image/jpeg", self.full_jpeg
        if camera == "door" and rest == f"recordings/{DAY}/":
            return json_answer(200, [{"name": "101500.mp4", "type": "file", "mtime": mtime, "size": len(self.mp4)},
                                     {"name": "notes.txt", "type": "file", "mtime": mtime, "size": 3}])
        if camera == "door" and rest == f"recordings/{DAY}/101500.mp4":
            return 200, "video/mp4", self.mp4
        return 404, "text/plain", b"not found"


def json_answer(status: int, body) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def serve(api: FakeApi) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with api.lock:
                api.requests.append(path)
            status, content_type, body = api.answer(path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", api.csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60, capture_output=True)


@pytest.fixture(scope="module")
def site_pages(tmp_path_factory):
    """The rendered pages and static files of the mixed-http example, and the CSP nginx sends with them."""
    site_def, hosts = EXAMPLE_SITES["mixed-http"]
    site = load_site(write_site(tmp_path_factory.mktemp("site"), site_def, hosts))
    files = render_site(site)[site.hosts[0].name]
    www = tmp_path_factory.mktemp("www")
    for target, file in files.items():
        if target.startswith(WWW):
            (www / target.removeprefix(WWW)).parent.mkdir(parents=True, exist_ok=True)
            (www / target.removeprefix(WWW)).write_bytes(file.content)
    headers = files["etc/nginx/pi-stream/headers.conf"].content.decode()
    csp = re.search(r'add_header Content-Security-Policy "([^"]+)"', headers).group(1)
    return site, www, csp


@pytest.fixture(scope="module")
def api(site_pages, tmp_path_factory):
    for program in ("ffmpeg", "chromium", "chromedriver"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: run scripts/install.sh")
    _site, www, csp = site_pages
    media = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x360", "-frames:v", "1", str(media / "full.jpg"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x180", "-frames:v", "1", str(media / "thumb.jpg"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x180:rate=10", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(media / "rec.mp4"))
    fake = FakeApi(www, csp, *(p.read_bytes() for p in (media / "full.jpg", media / "thumb.jpg", media / "rec.mp4")))
    server = serve(fake)
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()


@pytest.fixture(scope="module")
def browser(api):
    driver = headless_chromium(console_log=True)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, api):
    """Opens a page and, after the test, fails on any console error that is not a plain HTTP status."""
    api.logged_in, api.camera_refusal = True, None
    browser.get_log("browser")  # drop what earlier tests left

    def open_page(path: str):
        browser.get(api.base + "/static/pages.css")  # a neutral page, so a fragment-only change still loads
        browser.get(api.base + path)
        return browser

    yield open_page
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert not errors, errors


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def text(driver, selector: str) -> str:
    return js(driver, "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", selector)


def test_rendered_pages_name_no_camera(site_pages):
    """The pages are public: the cameras come from the session, never from the HTML."""
    site, www, _csp = site_pages
    for name in ("replay.html", "status.html"):
        html = (www / name).read_text()
        assert html.startswith("<!DOCTYPE html>\n<!-- Generated by pi-stream from templates/var/www/pi-stream/")
        assert f"{site.name} · " in html
        # The Content-Security-Policy allows no inline script or style.
        assert "<script>" not in html and "<style" not in html and not re.search(r"\s(on[a-z]+|style)\s*=", html)
        for camera in site.cameras_on(site.hosts[0].name):
            assert camera.name not in html, (name, camera.name)


def test_status_page_fills_refreshes_and_stops(page, api):
    """One row per camera with state, codec warning, stale supervisor and NVR line; 5 s refresh, paused when hidden."""
    driver = page("/status.html")
    rows = "#cameras tr"
    wait_until(lambda: js(driver, "return [...document.querySelectorAll(arguments[0] + ' .col-fps')].every(c => c.textContent)", rows)
               and text(driver, "tr[data-camera=gate] .col-state .state") == "no supervisor", "the status table", 10)
    assert js(driver, "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset.camera)", rows) == ["door", "yard", "gate"]
    assert text(driver, "tr[data-camera=door] .col-state .state") == "live"
    assert text(driver, "tr[data-camera=door] .col-bitrate") == "812 kbit/s"
    assert text(driver, "tr[data-camera=yard] .col-state .state") == "backing off"
    assert "browsers play H.264" in text(driver, "tr[data-camera=yard] .col-codec")
    detail = "over the NVR's session budget: 8 of 8 sessions in use <b>by higher-priority cameras</b>"
    assert text(driver, "tr[data-camera=yard] .col-detail").startswith(detail)
    assert not js(driver, "return document.querySelector('#cameras b')"), "server text became markup"
    assert text(driver, "tr[data-camera=yard] .col-camera strong") == "Yard <b>east</b>"
    assert "RTSP 453" in text(driver, "tr[data-camera=yard] .col-error")
    assert "4 failures" in text(driver, "tr[data-camera=yard] .col-retry")
    assert "not running" in text(driver, "tr[data-camera=gate] .col-state")
    assert text(driver, "tr[data-camera=yard] .col-recording") == "off"
    assert text(driver, "tr[data-camera=door] .col-recording") == "recording"
    assert text(driver, "tr[data-camera=gate] .col-recording").startswith("waiting")
    assert text(driver, "tr[data-camera=yard] .col-snapshots").startswith("not archivedpaused: disk below 10% free")
    assert text(driver, "tr[data-camera=door] .col-snapshots").endswith("s agoevery 4 s")
    assert "latest only" in text(driver, "tr[data-camera=gate] .col-snapshots")
    assert text(driver, "tr[data-camera=door] .col-disk").startswith("42% free")
    assert text(driver, "#nvrs li[data-nvr=shed]").startswith("shed: 8 of 8 sessions in use")
    wait_until(lambda: js(driver, "const i = document.querySelector('tr[data-camera=door] .snapshot img');"
                                  "return !i.hidden && i.naturalWidth === 320"), "the latest snapshot's thumbnail", 10)
    assert re.search(r"latest\.thumb\.jpg\?t=\d", js(driver, "return document.querySelector('tr[data-camera=door] .snapshot img').src"))

    # Every 5 s, one request per camera.
    first = api.count(r"/door/status\.json$")
    wait_until(lambda: api.count(r"/door/status\.json$") > first, "a refresh", 8)
    # Hidden tab: no more requests; visible again: an immediate refresh.
    js(driver, "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
               "document.dispatchEvent(new Event('visibilitychange'));")
    time.sleep(0.5)
    hidden = api.count(r"/status\.json$")
    time.sleep(6)
    assert api.count(r"/status\.json$") == hidden, "the hidden page kept asking"
    # Logged out meanwhile: the next refresh meets 401, the page says so and stops.
    api.logged_in = False
    js(driver, "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
               "document.dispatchEvent(new Event('visibilitychange'));")
    wait_until(lambda: js(driver, "return !document.getElementById('logged-out').hidden"), "the log-in message", 8)
    assert js(driver, "return document.getElementById('status').hidden")
    stopped = api.count(r"/status\.json$")
    time.sleep(5.5)
    assert api.count(r"/status\.json$") == stopped, "the page kept asking after a 401"


def test_replay_page_scrubs_lazily_and_plays_recordings(page, api):
    """Camera from the fragment, days newest first, thumbnails while dragging, full frame on release, bounded play."""
    with api.lock:
        api.requests.clear()
    driver = page("/replay.html#camera=yard")
    last = STAMPS[-1]
    frame_src = "return document.getElementById('frame').src"
    wait_until(lambda: (js(driver, frame_src) or "").endswith(f"/camera/yard/snapshots/{DAY}/{last}.jpg")
               and js(driver, "return document.getElementById('frame').naturalWidth") == 640, "the newest frame", 10)
    assert js(driver, "return document.getElementById('camera').value") == "yard"
    assert js(driver, "return [...document.getElementById('day').options].map(o => o.value)") == [DAY, OLDER_DAY]
    assert js(driver, "return document.getElementById('position').max") == str(len(STAMPS) - 1)
    assert text(driver, "#frame-time") == f"{last[:2]}:{last[2:4]}:{last[4:]}"
    assert "camera=yard" in driver.current_url and f"day={DAY}" in driver.current_url

    # Dragging shows the thumbnail of where the slider is; releasing loads the full picture.
    js(driver, "const p = document.getElementById('position'); p.value = '50'; p.dispatchEvent(new Event('input'));")
    assert text(driver, "#frame-time") == "10:03:20"
    wait_until(lambda: js(driver, frame_src).endswith(f"/{STAMPS[50]}.thumb.jpg"), "the thumbnail while dragging", 5)
    js(driver, "document.getElementById('position').dispatchEvent(new Event('change'));")
    wait_until(lambda: js(driver, frame_src).endswith(f"/{STAMPS[50]}.jpg"), "the full frame on release", 5)
    # Buttons and arrow keys step one frame.
    driver.find_element("id", "next").click()
    wait_until(lambda: js(driver, frame_src).endswith(f"/{STAMPS[51]}.jpg"), "the next frame", 5)
    js(driver, "document.activeElement.blur(); document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft', bubbles: true}));")
    wait_until(lambda: js(driver, frame_src).endswith(f"/{STAMPS[50]}.jpg"), "the previous frame by arrow key", 5)
    assert text(driver, "#frame-time") == "10:03:20"
    # Play steps forward and stops at the last frame.
    js(driver, "const p = document.getElementById('position'); p.value = String(p.max - 4); p.dispatchEvent(new Event('change'));")
    driver.find_element("id", "play").click()
    assert text(driver, "#play") == "Pause"
    wait_until(lambda: text(driver, "#play") == "Play" and js(driver, frame_src).endswith(f"/{last}.jpg"), "play to the end", 10)
    assert js(driver, "return document.getElementById('position').value") == str(len(STAMPS) - 1)

    # Lazy: a handful of full frames and only thumbnails near the positions visited, out of 200 frames.
    full = api.count(r"/snapshots/.*/\d{6}\.jpg$")
    thumbs = api.count(r"\.thumb\.jpg$")
    assert full <= 12, full
    assert thumbs <= 40, thumbs
    assert not api.count(r"evil|/1\.jpg|x\.mp4|lost\+found|2026-1-1"), "a listing entry that fails the patterns was used"
    # yard records nothing (404): no recordings section.
    assert js(driver, "return document.getElementById('recordings-section').hidden")

    # Another camera: its recordings, one click plays the segment.
    js(driver, "const s = document.getElementById('camera'); s.value = 'door'; s.dispatchEvent(new Event('change'));")
    wait_until(lambda: js(driver, "return document.querySelectorAll('#recordings button').length") == 1, "door's recordings", 10)
    assert "camera=door" in driver.current_url
    driver.find_element("css selector", "#recordings button").click()
    wait_until(lambda: js(driver, "const v = document.getElementById('recording'); return !v.hidden && v.readyState >= 1"),
               "the recording's metadata", 10)
    assert js(driver, "return document.getElementById('recording').src").endswith(f"/camera/door/recordings/{DAY}/101500.mp4")
    assert js(driver, "return document.getElementById('recording').error") is None


@pytest.mark.parametrize("refusal", [401, 403])
@pytest.mark.parametrize("path", ["/replay.html", "/status.html"])
def test_pages_send_a_logged_out_viewer_to_the_main_page(page, api, path, refusal):
    """401 (no session) or 403 (a session cookie that no longer passes) from /auth/session: a short message and
    a link to /, nothing else."""
    with api.lock:
        api.requests.clear()
    api.logged_in, api.session_refusal = False, refusal
    driver = page(path)
    wait_until(lambda: js(driver, "return !document.getElementById('logged-out').hidden"), "the log-in message", 10)
    assert js(driver, "return document.querySelector('main').hidden")
    assert js(driver, "return document.querySelector('#logged-out a').getAttribute('href')") == "/"
    assert not api.count(r"^/camera/"), "a logged-out page asked for camera data"


@pytest.mark.parametrize("path", ["/replay.html", "/status.html"])
def test_pages_say_log_out_and_in_when_the_camera_token_expired(page, api, path):
    """410 (or 401) from the camera paths while the session is valid: "log in" alone would not help."""
    api.camera_refusal = 410
    driver = page(path)
    wait_until(lambda: "log out" in (text(driver, "#logged-out-why") or "")
               and js(driver, "return !document.getElementById('logged-out').hidden"), "the log-out-and-in message", 10)
    assert js(driver, "return document.querySelector('main').hidden")
