"""A Hikvision-style DVR published through a simulated Pi: pages, cached assets, WebSocket video on 7682, isolation, bans.

A lab of its own ("dvrtest", one Pi). The fake DVR (pi_stream/lab/fake_dvr.py)
is wired to the Pi alone, in a namespace of its own behind the Pi's eth1
(lab.network_behind), like a DVR on the Pi's second port. A stranger on the
lab network (lab.client_namespace) plays the internet: it reaches the Pi,
and, since this Pi is made to forward, it would reach the DVR but for the
Pi's firewall. The same DVR is published twice, under two names sharing 443
and 7682 (told apart by SNI and Host): once as it is, once with the
appliance's login in front, so one deploy covers both. Requests name the DVR
through a Host header, an SNI name or Chromium's resolver rules: no DNS.
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.site import load_site
from pi_stream.verify import Http
from pi_stream.workflows import run_deploy
from tests.browser import headless_chromium
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.lab.conftest import booted_lab, ssh

LAB = "dvrtest"
PUBLIC_NAME = "dvr.lab.test"
GUARDED_NAME = "guarded.lab.test"  # the same DVR behind the appliance's login (viewer_auth)
DVR_USER, DVR_PASSWORD = "admin", "dvr:p@ss/word"
# Past nginx's 60 s defaults (proxy_read_timeout, send_timeout), with a margin: what the 3600 s
# timeouts are for. Keepalive probes start after 10 min idle, so a longer stream would prove nothing more.
STREAM_SECONDS = 75
MAXRETRY = 3
# nginx's login limit (pi_stream_login, 10r/m): once an address has spent its burst, one attempt per 6 s.
LOGIN_LIMIT_SECONDS = 6.5

@pytest.fixture(scope="module")
def dvr_lab():
    with booted_lab(LAB, hosts=1) as state:
        yield state


@pytest.fixture(scope="module")
def dvr_network(dvr_lab):
    from pi_stream import lab

    with lab.network_behind(dvr_lab, "pi1", "dvr") as device:
        yield device


@pytest.fixture(scope="module")
def stranger(dvr_lab, dvr_network):
    """A client on the lab network that routes to the DVR's network through the Pi, which forwards."""
    from pi_stream import lab

    pi = dvr_lab.hosts[0]
    subprocess.run(["ip", "netns", "exec", pi.namespace, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True, timeout=30)
    with lab.client_namespace(dvr_lab, "stranger") as client:
        subnet = dvr_network.address.rsplit(".", 1)[0] + ".0/24"
        subprocess.run([*client.exec_prefix, "ip", "route", "add", subnet, "via", pi.address], check=True, timeout=30)
        yield client


@pytest.fixture(scope="module")
def dvr(dvr_network, tmp_path_factory):
    from pi_stream.lab.dvr import fake_dvr

    with fake_dvr(dvr_network.exec_prefix, dvr_network.address, 80, 7681, DVR_USER, DVR_PASSWORD, tmp_path_factory.mktemp("dvr")) as server:
        yield server


def can_connect(exec_prefix: list[str], address: str, port: int) -> bool:
    """A TCP connect from inside a namespace, bounded at 3 s (a drop is a timeout, not a refusal)."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=3).close()"
    return subprocess.run([*exec_prefix, "python3", "-c", code], capture_output=True, timeout=30).returncode == 0


LISTENER_PORT = 8000


@pytest.fixture(scope="module")
def stranger_listener(stranger):
    """Something on the stranger's side for the DVR to phone home to."""
    listener = subprocess.Popen([*stranger.exec_prefix, "python3", "-m", "http.server", "--bind", stranger.address, str(LISTENER_PORT)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: can_connect(stranger.exec_prefix, stranger.address, LISTENER_PORT), "the stranger's listener", seconds=15)
        yield stranger
    finally:
        listener.terminate()
        listener.wait(timeout=10)


@pytest.fixture(scope="module")
def before_deploy(dvr, stranger_listener, dvr_network):
    """Reachability with no firewall yet: the control for the isolation test."""
    return {
        "stranger_to_dvr": can_connect(stranger_listener.exec_prefix, dvr.address, 80),
        "dvr_to_stranger": can_connect(dvr_network.exec_prefix, stranger_listener.address, LISTENER_PORT),
    }


@pytest.fixture(scope="module")
def depot(dvr_lab, dvr, before_deploy, tmp_path_factory):
    directory = tmp_path_factory.mktemp("depot") / "depot"
    site = {
        "name": "depot",
        "cameras": [{"name": "gate", "source": {"type": "testsrc"}, "width": 320, "height": 180, "fps": 5}],
        "fail2ban": {"maxretry": MAXRETRY, "findtime_seconds": 600, "bantime_seconds": 600},
        "dvr_proxy": {
            "shed": {"host": dvr.address, "server_name": PUBLIC_NAME},
            "guarded": {"host": dvr.address, "server_name": GUARDED_NAME, "viewer_auth": True},
        },
    }
    write_site(directory, site)
    dvr_lab.write_inventory(directory / "inventory.yml")
    result = run_deploy(load_site(directory), Console(show_progress=False))
    assert result.status == ExitStatus.OK, result.failures
    return directory


@pytest.fixture(scope="module")
def certificate(depot, dvr_lab, tmp_path_factory) -> Path:
    """The Pi's self-signed certificate, pinned: every client below checks it, names included."""
    pem = ssh(dvr_lab, "pi1", "cat", "/etc/pi-stream/tls/cert.pem")
    assert pem.returncode == 0, pem.stderr
    path = tmp_path_factory.mktemp("tls") / "cert.pem"
    path.write_text(pem.stdout)
    return path


def http_for(certificate: Path, name: str) -> Http:
    session = Http()
    session.verify = str(certificate)
    session.headers["Host"] = name
    return session


@pytest.fixture
def http(certificate):
    return http_for(certificate, PUBLIC_NAME)


def pi_url(dvr_lab, path: str, port: int = 443) -> str:
    return f"https://{dvr_lab.hosts[0].address}:{port}{path}"


def open_websocket(dvr_lab, certificate: Path, name: str, cookie: str = ""):
    """wss://NAME:7682 as a browser opens it (SNI and Host say NAME), connected to the Pi's address."""
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(certificate))
    sock = socket.create_connection((dvr_lab.hosts[0].address, 7682), timeout=15)
    headers = {"Cookie": cookie} if cookie else None
    return connect(f"wss://{name}:7682/websocket/stream?channel=1", sock=sock, ssl=context, additional_headers=headers,
                   open_timeout=15, max_size=None)


@pytest.fixture(scope="module")
def long_stream(depot, dvr_lab, certificate):
    """A WebSocket reading video through 7682 for STREAM_SECONDS, in the background while the other tests run."""
    result: dict = {"frames": 0, "gaps": 0, "error": None, "seconds": 0.0}

    from websockets.exceptions import WebSocketException

    def read() -> None:
        started = time.monotonic()
        try:
            with open_websocket(dvr_lab, certificate, PUBLIC_NAME) as stream:
                expected = None
                while time.monotonic() - started < STREAM_SECONDS:
                    frame = stream.recv(timeout=10)
                    sequence = int.from_bytes(frame[:8], "big")
                    result["gaps"] += expected is not None and sequence != expected
                    expected, result["frames"] = sequence + 1, result["frames"] + 1
        except (OSError, WebSocketException) as exc:  # reported by the test that reads the result
            result["error"] = repr(exc)
        result["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=read, name="dvr-websocket", daemon=True)
    reader.start()
    return reader, result


def test_page_loads_over_https_with_the_dvrs_redirect_rewritten(depot, dvr_lab, dvr, http, long_stream):
    start = http.get(pi_url(dvr_lab, "/"), allow_redirects=False)
    # The DVR said http://<its own address>/doc/page/login.asp; the browser must stay on https and the public name.
    assert start.status_code == 302
    assert start.headers["Location"] == f"https://{PUBLIC_NAME}/doc/page/login.asp"
    page = http.get(pi_url(dvr_lab, "/doc/page/login.asp"))
    assert page.status_code == 200 and "/doc/script/webvideo.js" in page.text
    seen = dvr.requests_for("/doc/page/login.asp")[-1]
    assert (seen.host, seen.x_forwarded_proto) == (dvr.address, "https")
    # Plain HTTP to the public name goes to HTTPS first.
    plain = http.get(f"http://{dvr_lab.hosts[0].address}/doc/page/login.asp", allow_redirects=False)
    assert plain.headers["Location"] == f"https://{PUBLIC_NAME}/doc/page/login.asp"


def test_static_assets_come_from_the_cache_on_the_second_load_and_logins_never(depot, dvr_lab, dvr, http):
    dvr.reset()
    first = http.get(pi_url(dvr_lab, "/doc/script/lib.js"))
    second = http.get(pi_url(dvr_lab, "/doc/script/lib.js"))
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert len(first.content) >= 1024 * 1024
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert dvr.stats().requests.get("/doc/script/lib.js") == 1, "the second load reached the DVR"
    good = "Basic " + base64.b64encode(f"{DVR_USER}:{DVR_PASSWORD}".encode()).decode()
    for _ in range(2):
        answer = http.get(pi_url(dvr_lab, "/ISAPI/Security/userCheck"), headers={"Authorization": good})
        assert answer.status_code == 200 and "WebSession" in answer.headers.get("Set-Cookie", "")
    assert dvr.stats().requests.get("/ISAPI/Security/userCheck") == 2, "a login answer was served from the cache"


def test_uploads_larger_than_the_appliance_limit_reach_the_dvr(depot, dvr_lab, dvr, http):
    body = b"x" * (256 * 1024)
    answer = http.post(pi_url(dvr_lab, "/ISAPI/System/configurationData"), data=body)
    assert answer.status_code == 200 and str(len(body)) in answer.text


def test_the_dvr_page_plays_its_websocket_in_headless_chromium(depot, dvr_lab, dvr):
    """The page's own script picks wss://NAME:7682 because it was loaded over HTTPS, and receives the frames."""
    driver = headless_chromium("--ignore-certificate-errors", f"--host-resolver-rules=MAP {PUBLIC_NAME} {dvr_lab.hosts[0].address}")
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"https://{PUBLIC_NAME}/")
        assert driver.current_url == f"https://{PUBLIC_NAME}/doc/page/login.asp"
        video = "return window.dvrVideo || {}"
        wait_until(lambda: driver.execute_script(video).get("frames", 0) >= 100, "100 frames in the page", seconds=30, interval=0.5)
        state = driver.execute_script(video)
        assert state["url"] == f"wss://{PUBLIC_NAME}:7682/websocket/stream?channel=1"
        assert state["gaps"] == 0 and not state["error"], state
        driver.find_element("id", "username").send_keys(DVR_USER)
        driver.find_element("id", "password").send_keys(DVR_PASSWORD)
        driver.find_element("id", "login").click()
        wait_until(lambda: driver.find_element("id", "login-result").text == "ok", "the DVR's login through the proxy", seconds=15)
    finally:
        driver.quit()


def test_the_dvr_is_reachable_by_the_pi_alone(depot, dvr_lab, dvr, stranger_listener, dvr_network, before_deploy):
    stranger = stranger_listener
    # Without the Pi's firewall the forwarding Pi let both through; with it, neither way.
    assert before_deploy == {"stranger_to_dvr": True, "dvr_to_stranger": True}
    for port in (80, 7681):
        assert not can_connect(stranger.exec_prefix, dvr.address, port), f"the stranger reached the DVR's port {port}"
    assert not can_connect(dvr_network.exec_prefix, stranger.address, LISTENER_PORT), "the DVR reached the lab network through the Pi"
    # The Pi itself still reaches it (that is how it proxies).
    code = f"import socket; socket.create_connection(({dvr.address!r}, 80), timeout=3).close()"
    probe = ssh(dvr_lab, "pi1", f"python3 -c {shlex.quote(code)}")  # ssh hands the remote shell one command line
    assert probe.returncode == 0, probe.stderr


def test_repeated_failed_dvr_logins_are_banned_on_every_port(depot, dvr_lab, dvr, stranger):
    pi = dvr_lab.hosts[0].address
    dvr.reset()
    curl = [*stranger.exec_prefix, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "-H", f"Host: {PUBLIC_NAME}", "-u", f"{DVR_USER}:wrong"]
    codes = [subprocess.run([*curl, f"https://{pi}/ISAPI/Security/userCheck"], capture_output=True, text=True, timeout=30).stdout
             for _ in range(MAXRETRY + 1)]
    assert codes == ["401"] * (MAXRETRY + 1), codes
    assert dvr.stats().logins.failed == MAXRETRY + 1

    def banned() -> bool:
        status = ssh(dvr_lab, "pi1", "fail2ban-client", "status", "pi-stream-dvr")
        return stranger.address in status.stdout

    wait_until(banned, "fail2ban's pi-stream-dvr jail to ban the stranger", seconds=60, interval=1)
    for port in (443, 7682):
        assert not can_connect(stranger.exec_prefix, pi, port), f"a banned address still reaches port {port}"
    ssh(dvr_lab, "pi1", "fail2ban-client", "set", "pi-stream-dvr", "unbanip", stranger.address)


def test_repeated_wrong_passwords_at_a_guarded_dvrs_login_are_banned(depot, dvr_lab, dvr, stranger):
    """Security review finding 1: the appliance's login in front of a DVR is limited, logged and banned like
    /auth/login, on every port; and its check is not reachable on the appliance's own name, where nothing
    limited or logged it."""
    pi = dvr_lab.hosts[0].address
    curl = [*stranger.exec_prefix, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "-H", "Content-Type: application/json", "--data", json.dumps({"user": VIEWER, "password": "wrong"})]

    def post(*args: str) -> str:
        return subprocess.run([*curl, *args], capture_output=True, text=True, timeout=30).stdout

    assert post(f"https://{pi}/auth/dvr/guarded/login") == "404"
    codes: list[str] = []
    for _ in range(4 * MAXRETRY):  # bounded; ends at MAXRETRY refusals
        codes.append(post("-H", f"Host: {GUARDED_NAME}", f"https://{pi}/_pi_stream/auth/login"))
        if codes.count("401") == MAXRETRY:
            break
        if codes[-1] == "429":
            # The login limit, per address across every login of the Pi: the DVR test before spent the stranger's burst.
            time.sleep(LOGIN_LIMIT_SECONDS)
    assert codes.count("401") == MAXRETRY and set(codes) <= {"401", "429"}, codes

    def banned() -> bool:
        return stranger.address in ssh(dvr_lab, "pi1", "fail2ban-client", "status", "pi-stream-auth").stdout

    wait_until(banned, "fail2ban's pi-stream-auth jail to ban the stranger", seconds=60, interval=1)
    try:
        for port in (443, 7682):
            assert not can_connect(stranger.exec_prefix, pi, port), f"a banned address still reaches port {port}"
    finally:
        ssh(dvr_lab, "pi1", "fail2ban-client", "set", "pi-stream-auth", "unbanip", stranger.address)


def test_viewer_auth_puts_the_appliances_login_in_front(depot, dvr_lab, dvr, certificate):
    """The second name: the DVR behind the appliance's login, which the DVR never sees."""
    from websockets.exceptions import InvalidStatus

    guarded = http_for(certificate, GUARDED_NAME)
    start = guarded.get(pi_url(dvr_lab, "/"), allow_redirects=False)
    assert (start.status_code, start.headers["Location"]) == (302, f"https://{GUARDED_NAME}/_pi_stream/login.html")
    assert guarded.get(pi_url(dvr_lab, "/_pi_stream/login.html")).status_code == 200
    with pytest.raises(InvalidStatus) as refused:
        open_websocket(dvr_lab, certificate, GUARDED_NAME)
    assert refused.value.response.status_code == 401

    assert guarded.post(pi_url(dvr_lab, "/_pi_stream/auth/login"), json={"user": VIEWER, "password": "wrong"}).status_code == 401
    login = guarded.post(pi_url(dvr_lab, "/_pi_stream/auth/login"), json={"user": VIEWER, "password": VIEWER_PASSWORD})
    assert login.status_code == 200, login.text
    cookie = f"WebSession=abc; pi_stream_dvr={login.cookies['pi_stream_dvr']}"
    dvr.reset()
    page = guarded.get(pi_url(dvr_lab, "/doc/page/login.asp"), headers={"Cookie": cookie})
    assert page.status_code == 200 and "webvideo.js" in page.text
    assert dvr.requests_for("/doc/page/login.asp")[-1].cookies == ("WebSession",), "the DVR saw the appliance's cookie"
    with open_websocket(dvr_lab, certificate, GUARDED_NAME, cookie) as stream:
        assert len(stream.recv(timeout=10)) >= 8


def test_websocket_on_7682_streams_past_nginxs_minute_without_a_timeout(long_stream, dvr):
    """Read all along the tests above: every frame, in order, at the DVR's rate, for STREAM_SECONDS."""
    reader, result = long_stream
    reader.join(timeout=STREAM_SECONDS + 60)
    assert not reader.is_alive(), "the WebSocket reader hung"
    assert result["error"] is None, result
    assert result["seconds"] >= STREAM_SECONDS and result["gaps"] == 0, result
    # 25 frames a second from the DVR; well over half of them is a stream, not a trickle.
    assert result["frames"] > 0.6 * 25 * result["seconds"], result
    assert any(w.path.startswith("/websocket/stream") and w.host.startswith(dvr.address) for w in dvr.stats().websockets)
