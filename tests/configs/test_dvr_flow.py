"""A DVR's web interface published by the real nginx, on loopback: the fast, lab-free twin of tests/lab/test_dvr_proxy.py.

The fake DVR (pi_stream/lab/fake_dvr.py) listens on 127.0.0.1, on ports the OS
chooses; nginx runs from a temporary root with the rendered tree, as in
test_auth_flow. Two appliances share the one DVR: `shed` publishes it as it
is, `guarded` with the appliance's login in front (viewer_auth). Requests name
the DVR by its public name in a Host header, with the port as a browser sends
it, so no DNS is needed. Tests that log in send from 127.0.0.X addresses of
their own, so nginx's per-address login limit of one does not spill into another.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from pi_stream.lab.dvr import FakeDvr, fake_dvr
from pi_stream.lab.fake_dvr import HOSTILE_COOKIES
from pi_stream.verify import Http
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.configs.tree import RootedAppliance, loopback_session, need_free_ports, prepare_rooted_appliance, running

NAME = "dvr.flow.test"
DVR_USER, DVR_PASSWORD = "admin", "dvr:p@ss/word"
LOGIN_PAGE = "/doc/page/login.asp"
USER_CHECK = "/ISAPI/Security/userCheck"
STREAM = "/websocket/stream?channel=1"


@dataclass(frozen=True)
class Published:
    """One appliance publishing the fake DVR: its https, http and WebSocket (TLS) ports."""

    appliance: RootedAppliance
    https_port: int
    http_port: int
    ws_port: int

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    def session(self, source: str) -> Http:
        """A browser on the DVR's public name, trusting the appliance's certificate alone."""
        session = loopback_session(source, str(self.appliance.certificate))
        session.headers["Host"] = f"{NAME}:{self.https_port}"
        return session

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.appliance.certificate))

    def frames(self, cookie: str = "", count: int = 20) -> list[int]:
        """The sequence numbers of the first `count` frames through wss://127.0.0.1:ws_port (nginx adds the TLS)."""
        # websockets sends its own Host: a second one would get a 400 from nginx.
        headers = {"Cookie": cookie} if cookie else None
        url = f"wss://127.0.0.1:{self.ws_port}{STREAM}"
        try:
            with connect(url, ssl=self.tls(), additional_headers=headers, open_timeout=10, close_timeout=2, max_size=None) as socket:
                return [int.from_bytes(socket.recv(timeout=5)[:8], "big") for _ in range(count)]
        except TimeoutError as exc:
            # Seen once in CI, never again in 30 runs here: say what nginx and the login service were doing.
            service = self.appliance.service
            alive = "running" if service is not None and service.poll() is None else "NOT running"
            log = self.appliance.root / "var/log/nginx/error.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no error log)"
            raise AssertionError(f"{url}: no answer in 10 s; the login service is {alive}; nginx's error log ends:\n{tail}") from exc

    def new_log_lines(self, before: str, count: int) -> list[str]:
        """The auth log's lines after `before`, once there are `count` (nginx writes them after answering)."""
        log = self.appliance.auth_log
        wait_until(lambda: len(log.read_text()[len(before) :].splitlines()) >= count, f"{count} new auth log line(s)", seconds=5)
        return log.read_text()[len(before) :].splitlines()


@pytest.fixture(scope="module")
def dvr(tmp_path_factory) -> Iterator[FakeDvr]:
    with fake_dvr([], "127.0.0.1", 0, 0, DVR_USER, DVR_PASSWORD, tmp_path_factory.mktemp("fake-dvr")) as server:
        yield server


@contextlib.contextmanager
def published(tmp_path_factory, dvr: FakeDvr, ports: tuple[int, int, int], viewer_auth: bool) -> Iterator[Published]:
    https_port, http_port, ws_port = ports
    need_free_ports(https_port, http_port, ws_port)
    base = tmp_path_factory.mktemp("dvr-flow")
    shed = {"host": "127.0.0.1", "server_name": NAME, "http_port": dvr.http_port, "websocket_ports": [{"tls": ws_port, "plain": dvr.ws_port}]}
    site = {
        "name": "flow",
        "web": {"https_port": https_port, "http_port": http_port},
        "cameras": [{"name": "garden", "source": {"type": "testsrc"}}],
        "fail2ban": {"maxretry": 3},
        # The guarded one names no login path: its DVR's 401s count as failed logins because the request carried credentials.
        "dvr_proxy": {"shed": {**shed, "viewer_auth": True, "login_paths": []} if viewer_auth else shed},
    }
    site_dir = write_site(base / "site", site)
    root = base / "root"
    prepare_rooted_appliance(site_dir, root)
    with running(RootedAppliance(root, site_dir), https_port) as appliance:
        yield Published(appliance, https_port, http_port, ws_port)


@pytest.fixture(scope="module")
def shed(tmp_path_factory, dvr) -> Iterator[Published]:
    """The DVR published as it is: its own login only."""
    with published(tmp_path_factory, dvr, (18543, 18180, 17682), viewer_auth=False) as site:
        yield site


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, dvr) -> Iterator[Published]:
    """The DVR behind the appliance's login (viewer_auth: true), with no login path of its own."""
    with published(tmp_path_factory, dvr, (18544, 18181, 17683), viewer_auth=True) as site:
        yield site


def basic(password: str) -> str:
    """The Authorization header of the DVR page's login (ISAPI userCheck)."""
    return "Basic " + base64.b64encode(f"{DVR_USER}:{password}".encode()).decode()


GOOD = basic(DVR_PASSWORD)


def hits(dvr: FakeDvr, path: str) -> int:
    return dvr.stats().requests.get(path, 0)


def test_the_dvrs_redirect_keeps_the_browser_on_https_and_the_public_name(shed, dvr):
    browser = shed.session("127.0.0.2")
    start = browser.get(shed.url("/"), allow_redirects=False, timeout=10)
    # The DVR said http://127.0.0.1:PORT/doc/page/login.asp, its own address; the browser stays where it was.
    assert start.status_code == 302
    assert start.headers["Location"] == f"https://{NAME}:{shed.https_port}{LOGIN_PAGE}"
    assert start.headers["Strict-Transport-Security"] == "max-age=63072000"
    seen = dvr.requests_for("/")[-1]
    assert (seen.host, seen.x_forwarded_proto, seen.x_forwarded_for) == (f"127.0.0.1:{dvr.http_port}", "https", "127.0.0.2")
    # Behind a router that forwards 443 to this port, the browser names no port: it must not be sent to the Pi's.
    forwarded = browser.get(shed.url("/"), headers={"Host": NAME}, allow_redirects=False, timeout=10)
    assert forwarded.headers["Location"] == f"https://{NAME}{LOGIN_PAGE}"
    page = browser.get(shed.url(LOGIN_PAGE), timeout=10)
    assert page.status_code == 200 and "/doc/script/webvideo.js" in page.text
    # Plain HTTP to the public name goes to HTTPS first, on the DVR's port.
    plain = browser.get(f"http://127.0.0.1:{shed.http_port}{LOGIN_PAGE}", headers={"Host": NAME}, allow_redirects=False, timeout=10)
    assert (plain.status_code, plain.headers["Location"]) == (301, f"https://{NAME}:{shed.https_port}{LOGIN_PAGE}")


def test_static_assets_come_from_the_cache_and_logins_never(shed, dvr):
    browser = shed.session("127.0.0.3")
    before = hits(dvr, "/doc/script/lib.js")
    first = browser.get(shed.url("/doc/script/lib.js"), timeout=10)
    second = browser.get(shed.url("/doc/script/lib.js"), timeout=10)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert len(first.content) == 1024 * 1024
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert hits(dvr, "/doc/script/lib.js") == before + 1, "the second load reached the DVR"
    logins = hits(dvr, USER_CHECK)
    for _ in range(2):
        answer = browser.get(shed.url(USER_CHECK), headers={"Authorization": GOOD}, timeout=10)
        assert answer.status_code == 200 and "WebSession=" in answer.headers["Set-Cookie"]
        assert "X-Cache-Status" not in answer.headers
    assert hits(dvr, USER_CHECK) == logins + 2, "a login answer was served from the cache"


def test_requests_with_credentials_neither_use_nor_fill_the_cache(shed, dvr):
    browser = shed.session("127.0.0.4")
    logo = "/doc/images/logo.png"
    statuses = [browser.get(shed.url(logo), timeout=10).headers["X-Cache-Status"] for _ in range(2)]
    assert statuses == ["MISS", "HIT"]
    before = hits(dvr, logo)
    with_credentials = browser.get(shed.url(logo), headers={"Authorization": GOOD}, timeout=10)
    assert (with_credentials.status_code, with_credentials.headers["X-Cache-Status"]) == (200, "BYPASS")
    assert hits(dvr, logo) == before + 1, "a request with credentials was answered from the cache"
    # What a request with credentials fetched is not kept for the next visitor.
    style = "/doc/css/ui.css"
    assert browser.get(shed.url(style), headers={"Authorization": GOOD}, timeout=10).headers["X-Cache-Status"] == "BYPASS"
    assert browser.get(shed.url(style), timeout=10).headers["X-Cache-Status"] == "MISS"
    assert hits(dvr, style) == 2


def test_uploads_larger_than_the_appliance_limit_reach_the_dvr(shed, dvr):
    browser = shed.session("127.0.0.5")
    body = b"x" * (256 * 1024)
    answer = browser.post(shed.url("/ISAPI/System/configurationData"), data=body, timeout=30)
    assert answer.status_code == 200 and f"<received>{len(body)}</received>" in answer.text
    assert dvr.requests_for("/ISAPI/System/configurationData")[-1].method == "POST"
    # The appliance's own pages on the same port take no such body: the DVR's limit is its own.
    assert browser.post(shed.url("/auth/logout"), data=body, headers={"Host": "127.0.0.1"}, timeout=30).status_code == 413


def test_wrong_dvr_passwords_are_logged_for_fail2ban(shed, dvr):
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban-regex not installed: run scripts/install.sh")
    browser = shed.session("127.0.0.1")
    before = shed.appliance.auth_log.read_text()
    wrong = basic("not the password")
    assert [browser.get(shed.url(USER_CHECK), headers={"Authorization": wrong}, timeout=10).status_code for _ in range(3)] == [401] * 3
    lines = shed.new_log_lines(before, 3)
    assert len(lines) == 3 and all(re.fullmatch(r"\S+ dvr-login-failed dvr=shed client=127\.0\.0\.1 status=401", line) for line in lines), lines
    # The jail's filter, as rendered, over the log nginx wrote: one failure per line, the client's address.
    jail_filter = shed.appliance.root / "etc/fail2ban/filter.d/pi-stream-dvr.conf"
    found = subprocess.run(["fail2ban-regex", "-o", "ip", str(shed.appliance.auth_log), str(jail_filter)],
                           capture_output=True, text=True, timeout=60)
    assert found.stdout.split() == ["127.0.0.1"] * 3, found.stdout + found.stderr
    # A right password is no failure.
    written = shed.appliance.auth_log.read_text()
    assert browser.get(shed.url(USER_CHECK), headers={"Authorization": GOOD}, timeout=10).status_code == 200
    time.sleep(0.3)  # a line, if nginx wrote one, would be there by now
    assert shed.appliance.auth_log.read_text() == written


def test_websocket_video_through_tls(shed, dvr):
    started = time.monotonic()
    assert shed.frames() == list(range(20))  # consecutive from the first: nothing lost or reordered
    assert time.monotonic() - started < 3, "20 frames at the DVR's 25 a second took too long"
    seen = dvr.stats().websockets[-1]
    assert (seen.path, seen.host, seen.x_forwarded_proto) == (STREAM, f"127.0.0.1:{dvr.ws_port}", "https")
    # Without an Upgrade the port answers a page of its own, to accept a self-signed certificate on.
    plain = shed.session("127.0.0.6").get(f"https://127.0.0.1:{shed.ws_port}/", timeout=10)
    assert plain.status_code == 200 and plain.text.startswith("pi-stream: the WebSocket port of DVR shed.")
    # HTTP/2 on the DVR's pages; the WebSocket port stays HTTP/1.1, the only way nginx carries WebSocket.
    assert alpn(shed, shed.https_port) == "h2" and alpn(shed, shed.ws_port) == "http/1.1"


def alpn(site: Published, port: int) -> str:
    """The protocol a browser's TLS handshake with the DVR's name settles on."""
    context = site.tls()
    context.check_hostname = False  # the test certificate names 127.0.0.1; SNI still says the DVR's name
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=NAME) as tls:
        return tls.selected_alpn_protocol()


def test_viewer_auth_sends_strangers_to_the_login_page(guarded, dvr):
    browser = guarded.session("127.0.0.7")
    before = hits(dvr, "/")
    start = browser.get(guarded.url("/"), allow_redirects=False, timeout=10)
    assert start.status_code == 302 and start.headers["Location"] == f"https://{NAME}:{guarded.https_port}/_pi_stream/login.html"
    form = browser.get(guarded.url("/_pi_stream/login.html"), timeout=10)
    assert form.status_code == 200 and "DVR login" in form.text
    assert browser.get(guarded.url("/_pi_stream/static/dvr-login.js"), timeout=10).status_code == 200
    with pytest.raises(InvalidStatus) as refused:
        guarded.frames()
    assert refused.value.response.status_code == 401
    assert hits(dvr, "/") == before, "a request without the appliance's login reached the DVR"


def test_viewer_auth_lets_a_logged_in_viewer_through_without_its_cookie(guarded, dvr):
    credentials = {"user": VIEWER, "password": VIEWER_PASSWORD}
    login = guarded.session("127.0.0.8").post(guarded.url("/_pi_stream/auth/login"), json=credentials, timeout=30)
    assert login.status_code == 200, login.text
    token = login.cookies["pi_stream_dvr"]
    # The device cookie that puts this browser first for the next DVR login comes back only to the login path.
    device = next(c for c in login.cookies if c.name == "pi_stream_device")
    assert device.path == "/_pi_stream/auth/login" and device.value.startswith(f"{VIEWER}~")
    browser = guarded.session("127.0.0.8")
    page = browser.get(guarded.url(LOGIN_PAGE), headers={"Cookie": f"WebSession=abc; pi_stream_dvr={token}"}, timeout=10)
    assert page.status_code == 200 and "/doc/script/webvideo.js" in page.text
    assert dvr.requests_for(LOGIN_PAGE)[-1].cookies == ("WebSession",), "the appliance's cookie went on to the DVR"
    assert guarded.frames(cookie=f"pi_stream_dvr={token}") == list(range(20))
    assert dvr.stats().websockets[-1].cookies == ()
    # Past the appliance's login, the DVR's own refusal reaches its page (not the appliance's login page) and is logged.
    before = guarded.appliance.auth_log.read_text()
    wrong = basic("not the password")
    refused = browser.get(guarded.url(USER_CHECK), headers={"Cookie": f"pi_stream_dvr={token}", "Authorization": wrong}, timeout=10)
    assert refused.status_code == 401 and "<statusValue>401</statusValue>" in refused.text
    assert re.fullmatch(r"\S+ dvr-login-failed dvr=shed client=127\.0\.0\.8 status=401", guarded.new_log_lines(before, 1)[0])


def test_viewer_auth_wrong_password_is_logged(guarded):
    before = guarded.appliance.auth_log.read_text()
    browser = guarded.session("127.0.0.1")
    answer = browser.post(guarded.url("/_pi_stream/auth/login"), json={"user": VIEWER, "password": "not the password"}, timeout=30)
    assert answer.status_code == 401 and "pi_stream_dvr" not in answer.cookies
    lines = guarded.new_log_lines(before, 1)
    assert len(lines) == 1 and re.fullmatch(r"\S+ login-failed client=127\.0\.0\.1 status=401", lines[0]), lines


def test_the_dvr_login_is_not_reachable_on_the_appliances_own_host(guarded, dvr):
    """Security review finding 1: /auth/dvr/NAME/login answered on the appliance's host through the generic
    /auth/ location, with no limit and no log. Only the login service's own routes pass there now."""
    browser = loopback_session("127.0.0.21", str(guarded.appliance.certificate))  # the appliance's host, not the DVR's
    before = guarded.appliance.auth_log.read_text()
    statuses = [browser.post(guarded.url("/auth/dvr/shed/login"), json={"user": VIEWER, "password": f"guess {i}"}, timeout=30).status_code
                for i in range(8)]
    assert set(statuses) == {404}, statuses
    assert browser.get(guarded.url("/auth/dvr/shed/check"), timeout=10).status_code == 404
    assert guarded.appliance.auth_log.read_text() == before
    # Its own routes still answer, the login behind its limit.
    assert browser.get(guarded.url("/auth/session"), timeout=10).status_code == 401


def test_the_dvr_never_sees_the_appliances_cookies_nor_replaces_them(guarded, dvr):
    """Finding 3: cookies ignore ports, so a browser sends the appliance's cookies to a DVR on another port of
    the same host. The appliance's cookie paths are refused on the DVR's server, its cookies are taken out of
    whatever reaches the DVR, and the DVR's own cookies cannot land on the appliance's paths."""
    login = guarded.session("127.0.0.22").post(guarded.url("/_pi_stream/auth/login"), json={"user": VIEWER, "password": VIEWER_PASSWORD},
                                                 timeout=30)
    assert login.status_code == 200, login.text
    token = login.cookies["pi_stream_dvr"]
    browser = guarded.session("127.0.0.22")
    ours = f"pi_stream_session={VIEWER}~1~x; pi_stream_media={VIEWER}~1~y; pi_stream_device={VIEWER}~1~z"
    before = hits(dvr, "/auth/session")
    for path in ("/auth/session", "/auth/login", "/hls/garden/index.m3u8", "/camera/garden/status.json", "/webrtc/garden/"):
        answer = browser.get(guarded.url(path), headers={"Cookie": f"pi_stream_dvr={token}; {ours}"}, timeout=10)
        assert answer.status_code == 404, (path, answer.status_code)
    assert hits(dvr, "/auth/session") == before
    # Every cookie of ours, in any order, is taken out of what goes on; the DVR's own stay.
    page = browser.get(guarded.url(LOGIN_PAGE), headers={"Cookie": f"{ours}; WebSession=abc; pi_stream_dvr={token}; lang=en"}, timeout=10)
    assert page.status_code == 200
    assert dvr.requests_for(LOGIN_PAGE)[-1].cookies == ("WebSession", "lang"), dvr.requests_for(LOGIN_PAGE)[-1].cookies
    hostile = browser.get(guarded.url(HOSTILE_COOKIES), headers={"Cookie": f"pi_stream_dvr={token}"}, timeout=10)
    assert hostile.status_code == 200
    set_cookies = hostile.raw.headers.getlist("Set-Cookie")
    assert "WebSession=own; Path=/" in set_cookies
    assert not [c for c in set_cookies if re.search(r"Path=/(?:auth|hls|camera|webrtc)/", c)], set_cookies


def test_a_forged_dvr_cookie_is_logged_for_fail2ban_and_an_expired_one_is_not(guarded, dvr):
    """A DVR cookie that is there and does not pass is a 403, logged (within the refusal limit) for the media jail,
    and the answer clears it, so the next load shows the login page. An expired one is an honest old cookie:
    the login page, not logged."""
    browser = guarded.session("127.0.0.23")
    before = guarded.appliance.auth_log.read_text()
    forged = browser.get(guarded.url(LOGIN_PAGE), headers={"Cookie": f"pi_stream_dvr={VIEWER}~9999999999~forgedforgedforged"}, timeout=10,
                         allow_redirects=False)
    assert forged.status_code == 403 and "pi_stream_dvr=; Path=/; Max-Age=0" in forged.headers["Set-Cookie"]
    lines = guarded.new_log_lines(before, 1)
    assert len(lines) == 1 and re.fullmatch(r"\S+ dvr-cookie-refused dvr=shed client=127\.0\.0\.23 status=403", lines[0]), lines
    expired = browser.get(guarded.url(LOGIN_PAGE), headers={"Cookie": f"pi_stream_dvr={VIEWER}~1000~old"}, timeout=10, allow_redirects=False)
    assert expired.status_code == 302
    time.sleep(0.3)
    assert guarded.appliance.auth_log.read_text()[len(before):].splitlines() == lines
