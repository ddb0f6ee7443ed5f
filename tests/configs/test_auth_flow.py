"""Viewer auth with the real programs, on loopback: the rendered nginx config and the login service together.

No lab: nginx runs from a temporary root with the rendered tree (as the roles
install it), the login service from the rendered bundle, on high ports. Each test
sends from its own 127.0.0.X address, so nginx's per-address login limit of one
test does not spill into another.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from pi_stream import credentials
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.configs.tree import (
    RootedAppliance,
    load_auth_module,
    loopback_session,
    need_free_ports,
    prepare_rooted_appliance,
    rooted_paths,
    running,
)

HTTPS_PORT, HTTP_PORT = 18443, 18080
BOB, BOB_PASSWORD = "bob", "bob's long password"
SITE = {
    "name": "flow",
    "web": {"https_port": HTTPS_PORT, "http_port": HTTP_PORT},
    "cameras": [{"name": "garden", "source": {"type": "testsrc"}}, {"name": "door", "source": {"type": "testsrc"}}],
    "viewers": {BOB: {"cameras": ["garden"]}},
    "fail2ban": {"maxretry": 3},
}
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\n7.ts\n"


class Appliance(RootedAppliance):
    """nginx + pi_stream_auth.py from one rendered tree, and a deploy's viewer sync."""

    def sync_viewers(self) -> None:
        """What a deploy does after `pi-stream user ...`: new hashes, new token keys, nginx reloaded, service restarted."""
        shutil.copy(self.site_dir / "viewers.htpasswd", self.auth / "viewers")
        site = load_site(self.site_dir)
        access = render_site(site, rooted_paths(self.root))["pi1"]["etc/pi-stream/auth/access.json"].content
        (self.auth / "access.json").write_bytes(access)
        (self.auth / "nginx-token-keys.conf").write_text(self.tool("nginx-map"))
        self.nginx("-s", "reload")
        time.sleep(0.5)  # the old workers finish; new ones read the new keys
        self.start_service()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory) -> Appliance:
    need_free_ports(HTTPS_PORT)
    base = tmp_path_factory.mktemp("auth-flow")
    storage = base / "storage"
    site_dir = write_site(base / "site", {**SITE, "storage": {"snapshots_path": str(storage)}})
    credentials.add_user(site_dir, BOB, BOB_PASSWORD)
    root = base / "root"
    prepare_rooted_appliance(site_dir, root)
    for camera in ("garden", "door"):
        hls = root / "run/pi-stream/hls" / camera
        hls.mkdir(parents=True)
        (hls / "index.m3u8").write_text(PLAYLIST)
        (hls / "7.ts").write_bytes(b"\x47" * 188 * 10)
    capture_files(root, storage)
    global CERT
    CERT = root / "etc/pi-stream/tls/cert.pem"
    with running(Appliance(root, site_dir), HTTPS_PORT) as started:
        yield started


CERT: Path | None = None  # set by the fixture: the test certificate, pinned
JPEG = b"\xff\xd8\xff\xe0 not really a picture"


def capture_files(root: Path, storage: Path) -> None:
    """What the capture supervisor leaves for nginx: status, latest snapshot, metrics, a dated series."""
    runtime = root / "run/pi-stream-capture"
    for camera in ("garden", "door"):
        (runtime / "snapshots" / camera).mkdir(parents=True)
        (runtime / "snapshots" / camera / "latest.jpg").write_bytes(JPEG)
        (runtime / "status").mkdir(exist_ok=True)
        (runtime / "status" / f"{camera}.json").write_text(json.dumps({"camera": camera, "state": "live"}))
        day = storage / "flow" / camera / "2026-11-23"
        day.mkdir(parents=True)
        (day / "101502.jpg").write_bytes(JPEG)
        (day / "101502.thumb.jpg").write_bytes(JPEG)
    (storage / "flow" / "not-a-camera.txt").write_text("must never be served")
    (runtime / "metrics.prom").write_text('pi_stream_camera_up{camera="garden"} 1\n')


def client(source: str) -> requests.Session:
    """A session sending from a given loopback address, trusting the test certificate alone."""
    return loopback_session(source, str(CERT))


URL = f"https://127.0.0.1:{HTTPS_PORT}"


def login(session: requests.Session, user: str, password: str) -> requests.Response:
    return session.post(f"{URL}/auth/login", json={"user": user, "password": password}, timeout=30)


def log_lines(path: Path, word: str, source: str) -> int:
    return sum(1 for line in path.read_text().splitlines() if word in line and f"client={source} " in line)


def test_page_is_public_and_media_needs_a_login(appliance):
    viewer = client("127.0.0.2")
    assert viewer.get(f"{URL}/", timeout=10).status_code == 200
    assert viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 401
    assert viewer.get(f"{URL}/auth/session", timeout=10).status_code == 401
    assert viewer.get(f"{URL}/_pi_stream_refused", timeout=10).status_code == 404


def test_login_then_media_with_the_cookie(appliance):
    viewer = client("127.0.0.3")
    response = login(viewer, VIEWER, VIEWER_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["name"] for c in body["cameras"]] == ["garden", "door"]
    cookies = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookies and "Secure" in cookies and "SameSite=Strict" in cookies and "Path=/hls/door/" in cookies
    playlist = viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10)
    assert playlist.status_code == 200 and playlist.text == PLAYLIST
    assert playlist.headers["Cache-Control"] == "no-cache"
    segment = viewer.get(f"{URL}/hls/door/7.ts", timeout=10)
    assert segment.status_code == 200 and segment.headers["Cache-Control"] == "private, max-age=60"
    assert "Content-Security-Policy" in segment.headers and "Strict-Transport-Security" in segment.headers
    assert viewer.get(f"{URL}/auth/session", timeout=10).json()["user"] == VIEWER
    device = next(c for c in viewer.cookies if c.name == "pi_stream_device")
    assert device.path == "/auth/login" and device.value.startswith(f"{VIEWER}~")
    # Logout clears the cookies; the page then asks again.
    assert viewer.post(f"{URL}/auth/logout", json={}, timeout=10).status_code == 200
    assert viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 401
    assert viewer.get(f"{URL}/auth/session", timeout=10).status_code == 401


def test_viewer_limited_to_some_cameras(appliance):
    viewer = client("127.0.0.4")
    response = login(viewer, BOB, BOB_PASSWORD)
    assert [c["name"] for c in response.json()["cameras"]] == ["garden"]
    assert viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 200
    # Bob's garden token, presented for the door: refused, and logged for fail2ban.
    garden_token = next(c.value for c in viewer.cookies if c.path == "/hls/garden/")
    direct = requests.get(f"{URL}/hls/door/index.m3u8", cookies={"pi_stream_media": garden_token}, verify=str(CERT), timeout=10)
    assert direct.status_code == 403
    assert viewer.post(f"{URL}/auth/link", json={"camera": "door"}, timeout=10).status_code == 403


def test_player_link_works_without_cookies(appliance):
    viewer = client("127.0.0.5")
    login(viewer, VIEWER, VIEWER_PASSWORD)
    link = viewer.post(f"{URL}/auth/link", json={"camera": "garden"}, timeout=10).json()["url"]
    assert link.startswith(f"https://127.0.0.1:{HTTPS_PORT}/v/") and link.endswith("/garden/index.m3u8")
    player = client("127.0.0.5")  # like VLC: no cookie, only the URL
    playlist = player.get(link, timeout=10)
    assert playlist.status_code == 200
    segment_url = link.rsplit("/", 1)[0] + "/" + playlist.text.strip().splitlines()[-1]
    assert player.get(segment_url, timeout=10).status_code == 200
    # A link opens one camera: the signature covers it, even for a viewer allowed both.
    assert player.get(link.replace("/garden/", "/door/"), timeout=10).status_code == 403
    forged = link.replace("/v/alice~", "/v/bob~")
    assert player.get(forged, timeout=10).status_code == 403
    # A missing segment too: its 404 must not put the request line in error.log.
    assert player.get(link.rsplit("/", 1)[0] + "/999999.ts", timeout=10).status_code == 404
    # The token opens the camera for weeks: neither log holds it (security review finding 4).
    token = link.split("/v/", 1)[1].split("/", 1)[0]
    logs = appliance.access_log.read_text() + (appliance.root / "var/log/nginx/error.log").read_text()
    assert token not in logs and token.split("~")[-1] not in logs
    assert '"GET /v/-/garden/index.m3u8 HTTP/1.1" 200' in appliance.access_log.read_text()


def test_expired_token_is_refused_without_counting_as_an_attack(appliance):
    path = appliance.tool("link", VIEWER, "garden", "--seconds", "-5").strip()
    before = appliance.auth_log.read_text()
    response = client("127.0.0.6").get(f"{URL}{path}", timeout=10)
    assert response.status_code == 410
    assert appliance.auth_log.read_text() == before
    fresh = appliance.tool("link", VIEWER, "garden", "--seconds", "60").strip()
    assert client("127.0.0.6").get(f"{URL}{fresh}", timeout=10).status_code == 200


def test_wrong_passwords_are_logged_for_fail2ban_and_rate_limited(appliance):
    source = "127.0.0.7"
    attacker = client(source)
    statuses = [login(attacker, VIEWER, f"wrong password {i}").status_code for i in range(20)]
    assert statuses[0] == 401
    assert statuses.count(429) >= 12, statuses  # burst 5 + 1, then nginx refuses without asking the service
    assert set(statuses) <= {401, 429}
    failures = log_lines(appliance.auth_log, "login-failed", source)
    assert failures == statuses.count(401)
    assert f"{source} " not in appliance.access_log.read_text(), "refusals stay out of access.log"
    # The address is limited, not the user: alice logs in from elsewhere at once.
    assert login(client("127.0.0.8"), VIEWER, VIEWER_PASSWORD).status_code == 200


def test_forged_token_flood_writes_a_bounded_log(appliance):
    source = "127.0.0.9"
    attacker = client(source)
    statuses = []
    for i in range(200):
        token = f"alice~9999999999~{'A' * 21}{'ABCDEFGHIJ'[i % 10]}"
        statuses.append(attacker.get(f"{URL}/hls/garden/index.m3u8", cookies={"pi_stream_media": token}, timeout=10).status_code)
    assert set(statuses) <= {403, 429} and statuses[0] == 403
    logged = log_lines(appliance.auth_log, "media-refused", source)
    assert logged == statuses.count(403) and 10 <= logged <= 12, (logged, statuses.count(403))
    error_log = (appliance.root / "var/log/nginx/error.log").read_text()
    assert source not in error_log, "a refusal must not write an error.log line"


def test_removed_user_and_changed_password_lose_access_at_the_next_deploy(appliance):
    viewer = client("127.0.0.10")
    login(viewer, BOB, BOB_PASSWORD)
    link = appliance.tool("link", VIEWER, "door").strip()
    assert viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 200
    credentials.remove_user(appliance.site_dir, BOB)
    credentials.add_user(appliance.site_dir, VIEWER, "a brand new password")
    site_yml = appliance.site_dir / "site.yml"
    site_yml.write_text(site_yml.read_text().replace("viewers:\n  bob:\n    cameras:\n    - garden\n", ""))
    try:
        appliance.sync_viewers()
        assert viewer.get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 403
        # The removed viewer's session cookie is refused and counted, as a forged one would be: 403, in the auth log.
        assert viewer.get(f"{URL}/auth/session", timeout=10).status_code == 403
        # nginx writes the line after it has answered: wait for it (bounded), never read at once.
        wait_until(lambda: log_lines(appliance.auth_log, "session-refused", "127.0.0.10") == 1, "the session-refused line", seconds=5)
        assert client("127.0.0.10").get(f"{URL}{link}", timeout=10).status_code == 403
        assert login(client("127.0.0.11"), VIEWER, "a brand new password").status_code == 200
    finally:
        credentials.add_user(appliance.site_dir, VIEWER, VIEWER_PASSWORD)
        appliance.sync_viewers()  # later tests expect alice's first password on the appliance


def test_login_service_answers_503_when_checks_queue_up(appliance, monkeypatch):
    """The bcrypt slot is bounded: a request that cannot get it within the wait gets 503, not a growing queue.
    A browser that logged in before (device cookie) is served first."""
    module = load_auth_module(appliance.script, monkeypatch)
    monkeypatch.setattr(module, "CHECK_WAIT_SECONDS", 0.01)
    config = module.Config.load(appliance.auth / "access.json", appliance.auth / "viewers", appliance.auth / "token.key")
    checker = module.Checker()
    assert checker.acquire(priority=False, timeout=1)
    try:
        assert checker.check(config, VIEWER, VIEWER_PASSWORD) is None
        assert checker.check(config, VIEWER, VIEWER_PASSWORD, priority=True) is None  # a check runs: everyone waits
    finally:
        checker.release()
    assert checker.check(config, "nobody", "whatever password") is False
    # A known device waiting for the slot goes before everyone else.
    checker.priority_waiting = 1
    assert checker.check(config, VIEWER, VIEWER_PASSWORD) is None
    checker.priority_waiting = 0
    assert checker.check(config, VIEWER, VIEWER_PASSWORD, priority=True) is True
    assert json.loads((appliance.auth / "access.json").read_text())["access"][VIEWER] == ["garden", "door"]


def raw_get(source: str, path: str, cookie: str = "") -> int:
    """A request whose path is sent exactly as written: no client-side clean-up of '..' or escapes."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(CERT))
    connection = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, context=context, source_address=(source, 0), timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        if cookie:
            connection.putheader("Cookie", f"pi_stream_media={cookie}")
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_snapshots_replay_and_status_behind_the_camera_token(appliance):
    viewer = client("127.0.0.12")
    assert viewer.get(f"{URL}/camera/garden/status.json", timeout=10).status_code == 401
    assert login(viewer, VIEWER, VIEWER_PASSWORD).status_code == 200
    assert viewer.get(f"{URL}/camera/garden/status.json", timeout=10).json()["state"] == "live"
    latest = viewer.get(f"{URL}/camera/garden/latest.jpg", timeout=10)
    assert latest.status_code == 200 and latest.content == JPEG and latest.headers["Content-Type"] == "image/jpeg"
    days = viewer.get(f"{URL}/camera/garden/snapshots/", timeout=10).json()
    assert [d["name"] for d in days] == ["2026-11-23"]
    frames = viewer.get(f"{URL}/camera/garden/snapshots/2026-11-23/", timeout=10).json()
    assert sorted(f["name"] for f in frames) == ["101502.jpg", "101502.thumb.jpg"]
    assert viewer.get(f"{URL}/camera/garden/snapshots/2026-11-23/101502.thumb.jpg", timeout=10).content == JPEG
    # Each camera's token opens that camera only (test_viewer_limited_to_some_cameras: a viewer without the door).
    token = next(c.value for c in viewer.cookies if c.path == "/camera/garden/")
    assert raw_get("127.0.0.12", "/camera/door/snapshots/", token) == 403
    # Only a camera, a date and a frame name: anything else is not there at all.
    for path in (
        "/camera/garden/snapshots/../not-a-camera.txt",
        "/camera/garden/snapshots/%2e%2e/not-a-camera.txt",
        "/camera/garden/snapshots/2026-11-23/..%2f..%2fnot-a-camera.txt",
        "/camera/garden/snapshots/2026-11-23/../../../../etc/passwd",
        "/camera/garden/snapshots/latest/",
        "/camera/garden/snapshots/2026-11-23/101502.png",
        "/camera/garden/recordings/",
        "/camera/garden/status.json/",
    ):
        assert raw_get("127.0.0.12", path, token) == 404, path


def test_metrics_only_for_the_pi_and_allowed_networks(appliance):
    assert raw_get("127.0.0.1", "/metrics") == 200
    assert raw_get("127.0.0.13", "/metrics") == 403
    response = client("127.0.0.1").get(f"{URL}/metrics", timeout=10)
    assert response.text.startswith("pi_stream_camera_up") and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_http2_serves_the_page_and_a_viewers_media(appliance):
    """ALPN offers h2 (web.http2, on by default): a camera grid shares one connection instead of queueing behind
    six HTTP/1.1 ones. The token check is the same over HTTP/2: curl speaks it, with the login's cookie."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(CERT))
    context.check_hostname = False
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10) as raw, context.wrap_socket(raw) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    viewer = client("127.0.0.30")
    assert login(viewer, VIEWER, VIEWER_PASSWORD).status_code == 200
    token = next(c.value for c in viewer.cookies if c.path == "/hls/garden/")

    def curl_http2(path: str, cookie: str = "") -> tuple[str, str]:
        argv = ["curl", "--http2", "-s", "--max-time", "10", "--cacert", str(CERT), "--interface", "127.0.0.30",
                "-w", "\n%{http_version} %{http_code}", *(["-b", cookie] if cookie else []), f"{URL}{path}"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        body, _, status = result.stdout.rpartition("\n")
        return status, body

    assert curl_http2("/")[0] == "2 200"
    assert curl_http2("/hls/garden/index.m3u8")[0] == "2 401"
    status, body = curl_http2("/hls/garden/index.m3u8", f"pi_stream_media={token}")
    assert (status, body) == ("2 200", PLAYLIST)
