"""WebRTC beside HLS, without OME: the login's /webrtc/ cookies, and the player page falling back to HLS in Chromium.

The login service runs in-process for the cookie rules; the browser tests run the rendered
nginx and login service from a temporary root (tests/configs/tree.py), with a live HLS from
ffmpeg. No OvenMediaEngine runs: nginx's /webrtc/CAMERA/ proxy points at a closed port (502,
the WebSocket fails), or at a fake signalling server that accepts the WebSocket and never
offers (the page's no-picture timer). Either way the tile must end on HLS, and play.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pi_stream import credentials
from pi_stream.render import OME_APP, TEMPLATES_DIR, render_site
from pi_stream.site import load_site
from pi_stream.site.webrtc import OME_SIGNALLING_PORT
from tests.browser import headless_chromium
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.configs.tree import RootedAppliance, load_auth_module, need_free_ports, prepare_rooted_appliance, running

HTTPS_PORT, HTTP_PORT = 18643, 18280
URL = f"https://127.0.0.1:{HTTPS_PORT}"
BOB, BOB_PASSWORD = "bob", "bob's long password"  # barn only: a WebRTC camera
CAROL, CAROL_PASSWORD = "carol", "carol's long password"  # shed only: HLS alone
CAMERAS = ("barn", "loft", "shed")
SITE = {
    "name": "farmyard",
    "web": {"https_port": HTTPS_PORT, "http_port": HTTP_PORT},
    "cameras": [{"name": name, "title": name.title(), "source": {"type": "testsrc"}} for name in CAMERAS],
    "viewers": {BOB: {"cameras": ["barn"]}, CAROL: {"cameras": ["shed"]}},
    "webrtc": {"cameras": ["barn", "loft"]},
}
MEDIA_PREFIXES = ("/hls/", "/camera/", "/webrtc/")
# The page's fallback timer (player.js WEBRTC_FIRST_FRAME_MS), checked once a second.
FIRST_FRAME_SECONDS = 8


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    site_dir = write_site(tmp_path_factory.mktemp("webrtc-site"), SITE)
    credentials.add_user(site_dir, BOB, BOB_PASSWORD)
    credentials.add_user(site_dir, CAROL, CAROL_PASSWORD)
    return site_dir


# ---- the login service, in-process ----------------------------------------------------------


@contextlib.contextmanager
def login_service(site_dir: Path, tmp_path: Path, monkeypatch, drop_webrtc: bool = False) -> Iterator[str]:
    """pi_stream_auth.py's server on a loopback port, fed this site's rendered access.json; yields its URL.
    drop_webrtc: the access.json of a pi-stream from before WebRTC (no "webrtc" key)."""
    site = load_site(site_dir)
    bundle = render_site(site)["pi1"]
    access = json.loads(bundle["etc/pi-stream/auth/access.json"].content)
    if drop_webrtc:
        del access["webrtc"]
    (tmp_path / "access.json").write_text(json.dumps(access))
    shutil.copy(site_dir / "viewers.htpasswd", tmp_path / "viewers")
    (tmp_path / "token.key").write_text(secrets.token_hex(32) + "\n")
    module = load_auth_module(TEMPLATES_DIR / "usr/local/lib/pi-stream/pi_stream_auth.py", monkeypatch)
    config = module.Config.load(tmp_path / "access.json", tmp_path / "viewers", tmp_path / "token.key")
    server = module.make_server(config, "127.0.0.1:0")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def media_cookie_paths(response: requests.Response) -> dict[str, str]:
    """path -> Max-Age of each pi_stream_media Set-Cookie, read one by one (requests joins them with commas)."""
    found = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        name_value, *attributes = header.split("; ")
        if name_value.partition("=")[0] == "pi_stream_media":
            fields = dict(attribute.partition("=")[::2] for attribute in attributes)
            found[fields["Path"]] = fields["Max-Age"]
    return found


def paths_for(*cameras: str, prefixes: tuple[str, ...] = MEDIA_PREFIXES) -> set[str]:
    return {f"{prefix}{camera}/" for camera in cameras for prefix in prefixes}


def test_login_sets_the_webrtc_cookie_only_for_the_viewers_webrtc_cameras(site_dir, tmp_path, monkeypatch):
    with login_service(site_dir, tmp_path, monkeypatch) as url:
        # bob may watch barn alone, a WebRTC camera: its cookie goes to /webrtc/barn/ too, never to loft's (WebRTC, not his).
        bob = requests.post(f"{url}/auth/login", json={"user": BOB, "password": BOB_PASSWORD}, timeout=30)
        assert bob.status_code == 200, bob.text
        assert set(media_cookie_paths(bob)) == paths_for("barn")
        assert bob.json()["cameras"] == [{"name": "barn", "title": "Barn", "playlist": "/hls/barn/index.m3u8", "webrtc": "/webrtc/barn/"}]
        # carol may watch shed alone, HLS only: no /webrtc/ cookie at all, no webrtc in her camera list.
        carol = requests.post(f"{url}/auth/login", json={"user": CAROL, "password": CAROL_PASSWORD}, timeout=30)
        assert set(media_cookie_paths(carol)) == paths_for("shed", prefixes=("/hls/", "/camera/"))
        assert carol.json()["cameras"] == [{"name": "shed", "title": "Shed", "playlist": "/hls/shed/index.m3u8"}]
        # alice sees all three: /webrtc/ for barn and loft, and her list marks those two alone.
        alice = requests.post(f"{url}/auth/login", json={"user": VIEWER, "password": VIEWER_PASSWORD}, timeout=30)
        assert set(media_cookie_paths(alice)) == paths_for("barn", "loft") | paths_for("shed", prefixes=("/hls/", "/camera/"))
        assert {c["name"]: c.get("webrtc") for c in alice.json()["cameras"]} == {"barn": "/webrtc/barn/", "loft": "/webrtc/loft/", "shed": None}
        # The same token on every path of a camera, as nginx checks one token per camera.
        tokens = {}
        for header in alice.raw.headers.getlist("Set-Cookie"):
            if header.startswith("pi_stream_media="):
                path = header.split("; Path=", 1)[1].split(";", 1)[0]
                tokens.setdefault(path.strip("/").split("/")[1], set()).add(header.split(";", 1)[0])
        assert all(len(values) == 1 for values in tokens.values()), tokens
        # The session answers the same list as the login.
        session = requests.get(f"{url}/auth/session", cookies={"pi_stream_session": alice.cookies["pi_stream_session"]}, timeout=10)
        assert session.json()["cameras"] == alice.json()["cameras"]
        # Logout clears every camera's cookie on every path, /webrtc/ included.
        logout = requests.post(f"{url}/auth/logout", json={}, timeout=10)
        assert media_cookie_paths(logout) == dict.fromkeys(paths_for(*CAMERAS), "0")


def test_an_access_json_from_before_webrtc_still_loads(site_dir, tmp_path, monkeypatch):
    """A login service updated before its access.json (no "webrtc" key): HLS cookies and entries only."""
    with login_service(site_dir, tmp_path, monkeypatch, drop_webrtc=True) as url:
        alice = requests.post(f"{url}/auth/login", json={"user": VIEWER, "password": VIEWER_PASSWORD}, timeout=30)
        assert alice.status_code == 200, alice.text
        assert set(media_cookie_paths(alice)) == paths_for(*CAMERAS, prefixes=("/hls/", "/camera/"))
        assert not [c for c in alice.json()["cameras"] if "webrtc" in c]


# ---- the page in Chromium, against the rooted appliance -------------------------------------


class FakeSignalling:
    """Where nginx proxies /webrtc/CAMERA/: a port nothing listens on (OME down: 502), or, once started, a
    WebSocket server that accepts, records the handshake and the messages, and never offers a stream."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.handshakes: list[tuple[str, dict[str, str], float]] = []  # (path, headers, when)
        self.messages: list[str] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def accepting(self) -> Iterator[FakeSignalling]:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.serve, args=(self.listener,), daemon=True).start()
        try:
            yield self
        finally:
            # shutdown() first: close() alone leaves the socket listening while serve() is blocked in accept().
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(client,), daemon=True).start()

    def session(self, client: socket.socket) -> None:
        with client:
            client.settimeout(60)
            reader = client.makefile("rb")
            request = reader.readline().decode("latin-1").split()
            headers = {}
            while (line := reader.readline().decode("latin-1").strip()):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self.lock:
                self.handshakes.append((request[1], headers, time.monotonic()))
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            client.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            with contextlib.suppress(OSError, ValueError):
                while (message := read_frame(reader)) is not None:
                    with self.lock:
                        self.messages.append(message)


def read_frame(reader) -> str | None:
    """One client frame's text (clients mask theirs); None when the socket closes or sends a close frame."""
    head = reader.read(2)
    if len(head) < 2 or head[0] & 0x0F == 0x8:
        return None
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(reader.read(2), "big")
    elif length == 127:
        length = int.from_bytes(reader.read(8), "big")
    mask = reader.read(4)
    payload = reader.read(length)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload)).decode("utf-8", "replace")


def live_hls(root: Path, log: Path) -> subprocess.Popen:
    """ffmpeg writing a live HLS (1 s fragments, a short window) for every camera, where nginx-rtmp would."""
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=10"]
    for camera in CAMERAS:
        hls = root / "run/pi-stream/hls" / camera
        hls.mkdir(parents=True, exist_ok=True)
        argv += ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-pix_fmt", "yuv420p",
                 "-f", "hls", "-hls_time", "1", "-hls_list_size", "4", "-hls_flags", "delete_segments+temp_file", str(hls / "index.m3u8")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


@pytest.fixture(scope="module")
def appliance(site_dir, tmp_path_factory) -> Iterator[tuple[RootedAppliance, FakeSignalling]]:
    for program in ("ffmpeg", "chromium", "chromedriver"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: run scripts/install.sh")
    need_free_ports(HTTPS_PORT, HTTP_PORT)
    base = tmp_path_factory.mktemp("webrtc-root")
    root = base / "root"
    prepare_rooted_appliance(site_dir, root)
    # OME's signalling port, moved to one of this test's: a fixed port would clash with anything else on the machine.
    signalling = FakeSignalling()
    conf = root / "etc/nginx/pi-stream/http.conf"
    upstream = f"proxy_pass http://127.0.0.1:{OME_SIGNALLING_PORT}/{OME_APP}/$pi_stream_camera;"
    assert conf.read_text().count(upstream) == 1, "the /webrtc/ proxy is not where this test expects it"
    conf.write_text(conf.read_text().replace(upstream, upstream.replace(f":{OME_SIGNALLING_PORT}/", f":{signalling.port}/")))
    ffmpeg = live_hls(root, base / "ffmpeg.log")
    try:
        def playlists_ready() -> bool:
            lists = [root / "run/pi-stream/hls" / camera / "index.m3u8" for camera in CAMERAS]
            return all(p.exists() and p.read_text().count("#EXTINF") >= 2 for p in lists)

        wait_until(playlists_ready, "ffmpeg's first HLS fragments", seconds=20)
        with running(RootedAppliance(root, site_dir), HTTPS_PORT) as started:
            yield started, signalling
    finally:
        ffmpeg.terminate()
        ffmpeg.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(appliance):
    driver = headless_chromium("--ignore-certificate-errors", console_log=True)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


# Installed before the login: every WebSocket the page opens, and the data-transport each tile had before
# each change (the first: null); tile() adds the current one.
RECORDER = """
window.testSockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(url, protocols) { super(url, protocols); window.testSockets.push(url); }
};
window.testTransports = {};
new MutationObserver(records => records.forEach(record => {
  (window.testTransports[record.target.id] = window.testTransports[record.target.id] || []).push(record.oldValue);
})).observe(document.getElementById('grid'), {subtree: true, attributeOldValue: true, attributeFilter: ['data-transport']});
"""


def log_in(driver, user: str, password: str) -> None:
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(f"{URL}/")
    wait_until(lambda: driver.execute_script("return !document.getElementById('login').hidden"), "the login form", 10)
    driver.get_log("browser")  # only what follows counts
    driver.execute_script(RECORDER)
    driver.find_element("name", "user").send_keys(user)
    driver.find_element("name", "password").send_keys(password)
    driver.find_element("css selector", "#login button").click()


def tile(driver, camera: str) -> dict:
    """What the test reads of a camera's tile: its transport (attribute and label), the HLS video's clock, OvenPlayer's elements."""
    return driver.execute_script("""
        const tile = document.getElementById('camera-' + arguments[0]);
        if (!tile) return null;
        const video = tile.querySelector(':scope > video');
        const transport = tile.getAttribute('data-transport');
        return {transport: transport, label: tile.querySelector('.transport').textContent,
                why: tile.querySelector('.transport').title, status: tile.querySelector('.status').textContent,
                hlsHidden: video.hidden, time: video.currentTime, ovenplayer: tile.querySelectorAll('.ovenplayer, .webrtc').length,
                history: (window.testTransports[tile.id] || []).slice(1).concat([transport])};
    """, camera)


def plays_hls(driver, camera: str) -> None:
    """The tile ends on HLS, says so, and its video's clock advances."""
    wait_until(lambda: (tile(driver, camera) or {}).get("transport") == "hls", f"{camera}'s tile on HLS", 20)
    wait_until(lambda: tile(driver, camera)["time"] > 0.5, f"{camera}'s HLS video playing", 20)
    first = tile(driver, camera)["time"]
    wait_until(lambda: tile(driver, camera)["time"] > first + 1, f"{camera}'s HLS video advancing", 10)
    wait_until(lambda: tile(driver, camera)["status"] == "live", f"{camera}'s tile saying live", 5)
    state = tile(driver, camera)
    assert state["label"] == "HLS" and not state["hlsHidden"] and state["ovenplayer"] == 0, state


def page_errors(driver) -> list[dict]:
    """Console errors but the expected ones: failed requests (the WebSocket's 502), and the inline styles OvenPlayer
    adds, which the page's CSP refuses on purpose (player.css hides OvenPlayer's UI)."""
    def expected(entry: dict) -> bool:
        message = entry["message"]
        return entry.get("source") == "network" or ("ovenplayer.js" in message and "inline style" in message and "style-src" in message)

    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and not expected(e)]


def access_log(appliance: RootedAppliance) -> list[str]:
    """nginx's access.log as "REQUEST STATUS" lines."""
    lines = appliance.access_log.read_text().splitlines() if appliance.access_log.exists() else []
    return [line.split('"')[1] + " " + line.split('"')[2].split()[0] for line in lines]


@pytest.mark.browser
def test_webrtc_refused_falls_back_to_hls_and_hls_only_cameras_never_try_it(appliance, browser):
    """OME down (nginx answers the WebSocket 502): barn and loft try WebRTC, then play HLS; shed plays HLS at once."""
    started, _signalling = appliance
    logged_before = len(access_log(started))
    log_in(browser, VIEWER, VIEWER_PASSWORD)
    for camera in CAMERAS:
        plays_hls(browser, camera)
    sockets = browser.execute_script("return window.testSockets")
    assert sorted(sockets) == [f"wss://127.0.0.1:{HTTPS_PORT}/webrtc/barn/", f"wss://127.0.0.1:{HTTPS_PORT}/webrtc/loft/"]
    for camera in ("barn", "loft"):
        state = tile(browser, camera)
        assert state["history"] == ["webrtc", "hls"], state
        assert state["why"].startswith("WebRTC failed") and state["why"].endswith(": playing HLS"), state
    shed = tile(browser, "shed")
    assert shed["history"] == ["hls"] and shed["why"] == "", shed
    # nginx let the signalling through (the cookie on /webrtc/CAMERA/ passed its token check) and found no OME behind it.
    webrtc_requests = [line for line in access_log(started)[logged_before:] if " /webrtc/" in line]
    assert sorted(set(webrtc_requests)) == ["GET /webrtc/barn/ HTTP/1.1 502", "GET /webrtc/loft/ HTTP/1.1 502"], webrtc_requests
    assert page_errors(browser) == []


@pytest.mark.browser
def test_webrtc_without_a_picture_falls_back_to_hls(appliance, browser):
    """Signalling accepted but no stream ever offered: WebRTC for the first-frame time, then HLS."""
    _started, signalling = appliance
    with signalling.accepting():
        log_in(browser, BOB, BOB_PASSWORD)
        wait_until(lambda: signalling.handshakes, "the WebSocket through nginx", 10)
        path, headers, opened = signalling.handshakes[0]
        # nginx passed the viewer's upgrade through to OME's application for the camera, cookie and all.
        assert path == f"/{OME_APP}/barn" and headers["upgrade"].lower() == "websocket", (path, headers)
        assert "pi_stream_media=bob~" in headers.get("cookie", ""), headers
        wait_until(lambda: signalling.messages, "OvenPlayer's first message", 5)
        assert json.loads(signalling.messages[0]) == {"command": "request_offer"}
        state = tile(browser, "barn")
        assert state["transport"] == "webrtc" and state["label"] == "WebRTC" and state["hlsHidden"] and state["ovenplayer"] == 1, state
        wait_until(lambda: tile(browser, "barn")["transport"] == "hls", "the fallback", FIRST_FRAME_SECONDS + 5)
        waited = time.monotonic() - opened
        assert FIRST_FRAME_SECONDS - 1 <= waited <= FIRST_FRAME_SECONDS + 3, waited
        plays_hls(browser, "barn")
        assert tile(browser, "barn")["why"] == f"WebRTC gave no picture in {FIRST_FRAME_SECONDS} s: playing HLS"
    assert len(signalling.handshakes) == 1, "the page tried WebRTC again after giving up on it"
    assert page_errors(browser) == []


def test_signalling_is_refused_without_a_token_and_for_another_viewers_camera(appliance):
    """verify's own probes against the rendered nginx: no token 401, bob's barn token at loft 403 (and logged for
    fail2ban), shed (HLS only) no /webrtc/ location at all; bob's own camera is passed on to OME's signalling."""
    from pi_stream.verify import Http, media_cookie, ssl_context_of
    from pi_stream.webrtc_checks import refused_without_token, signalling_offer

    rooted, signalling = appliance
    session = Http()
    session.verify = str(rooted.certificate)
    assert session.post(f"{URL}/auth/login", json={"user": BOB, "password": BOB_PASSWORD}).status_code == 200
    context = ssl_context_of(session)
    context.check_hostname = False  # the test certificate names 127.0.0.1 as its CN only
    wss = f"wss://127.0.0.1:{HTTPS_PORT}/webrtc"
    barn = media_cookie(session, "/webrtc/barn/")
    assert barn.startswith("pi_stream_media=") and media_cookie(session, "/webrtc/loft/") == ""
    assert refused_without_token(f"{wss}/barn/", context) == (True, "HTTP 401 from nginx")
    before = rooted.auth_log.read_text() if rooted.auth_log.exists() else ""
    assert signalling_offer(f"{wss}/loft/", barn, context, "-") == (False, "HTTP 403 from nginx")
    wait_until(lambda: rooted.auth_log.read_text().count("refused") > before.count("refused"), "the refusal in the auth log", seconds=5)
    assert signalling_offer(f"{wss}/shed/", barn, context, "-") == (False, "HTTP 404 from nginx")
    # With the token, nginx passes the WebSocket on to OME's port (here the fake, which never offers).
    with signalling.accepting():
        seen = len(signalling.handshakes)
        assert signalling_offer(f"{wss}/barn/", barn, context, "-", timeout=3) == (False, "TimeoutError: ")
        path, headers, _ = signalling.handshakes[seen]
    assert path == f"/{OME_APP}/barn" and headers["upgrade"].lower() == "websocket"
    # And with OME down, the viewer's browser gets nginx's 502 (the page then falls back to HLS).
    assert signalling_offer(f"{wss}/barn/", barn, context, "-", timeout=3) == (False, "HTTP 502 from nginx")
