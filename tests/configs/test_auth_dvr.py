"""The login service's DVR endpoints: the appliance's login as a second factor in front of a proxied DVR.

No nginx and no lab: the service from the templates runs on a loopback port with
a hand-written access.json, and the tests speak to it the way nginx would (the
login page's POSTs, auth_request's GET with the browser's Cookie header).
Cookies go in and out as raw headers: the jar would hold back Secure cookies on http.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import pytest
import requests

from pi_stream.render import TEMPLATES_DIR
from tests.conftest import wait_until
from tests.configs.tree import auth_tool_argv, load_auth_module

SERVICE = "usr/local/lib/pi-stream/pi_stream_auth.py"
PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}
ACCESS = {
    "cameras": [{"name": "garden", "title": "Garden"}, {"name": "door", "title": "Door"}],
    "access": {"alice": ["garden", "door"], "bob": ["garden"]},
    "dvrs": {"shed": ["alice"], "barn": ["alice", "bob"]},
    "session_seconds": 3600,
    "link_seconds": 600,
    "secure_cookies": True,
}


class Service:
    """pi_stream_auth.py serve on a loopback port, with the secrets it was given (the tests forge tokens with them)."""

    def __init__(self, root: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        auth = root / "etc/pi-stream/auth"
        self.key = bytes.fromhex((auth / "token.key").read_text().strip())
        self.hashes = dict(line.split(":", 1) for line in (auth / "viewers").read_text().splitlines())

    def token(self, dvr: str, user: str, expires: int, stored_hash: str | None = None) -> str:
        """A DVR token built from the documented formula, independently of the service's code."""
        parts = ("dvr", dvr, user, str(expires), stored_hash or self.hashes[user])
        signature = hmac.new(self.key, "\0".join(parts).encode(), hashlib.sha256).digest()
        return f"{user}~{expires}~{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"

    def login(self, dvr: str, user: str, password: str) -> requests.Response:
        return requests.post(f"{self.url}/auth/dvr/{dvr}/login", json={"user": user, "password": password}, timeout=30)

    def check(self, dvr: str, token: str | None) -> int:
        headers = {"Cookie": f"other=1; pi_stream_dvr={token}"} if token is not None else {}
        return requests.get(f"{self.url}/auth/dvr/{dvr}/check", headers=headers, timeout=10).status_code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def install_service(root: Path) -> None:
    """The service as the roles install it (copied verbatim from the templates), with a viewers file and a site key."""
    (root / SERVICE).parent.mkdir(parents=True)
    shutil.copy(TEMPLATES_DIR / SERVICE, root / SERVICE)
    auth = root / "etc/pi-stream/auth"
    auth.mkdir(parents=True)
    (auth / "access.json").write_text(json.dumps(ACCESS))
    # Cost 4: these tests are about the protocol, not bcrypt's speed.
    hashes = {user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() for user, password in PASSWORDS.items()}
    (auth / "viewers").write_text("".join(f"{user}:{hashed}\n" for user, hashed in hashes.items()))
    (auth / "token.key").write_text(secrets.token_hex(32) + "\n")


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    root = tmp_path_factory.mktemp("auth-dvr")
    install_service(root)
    port = free_port()
    process = subprocess.Popen(auth_tool_argv(root, "serve", "--listen", f"127.0.0.1:{port}"))
    try:
        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, "the login service", seconds=10, interval=0.05)
        yield Service(root, port)
    finally:
        process.terminate()
        process.wait(timeout=10)


def set_cookies(response: requests.Response) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (value, attributes) of each Set-Cookie header, read one by one (requests joins them with commas).
    A name set on several paths (the appliance's media cookies) keeps its last."""
    found = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        name_value, *attributes = header.split("; ")
        name, _, value = name_value.partition("=")
        found[name] = (value, dict(attribute.partition("=")[::2] for attribute in attributes))
    return found


def dvr_cookie(response: requests.Response) -> tuple[str, dict[str, str]]:
    """(value, attributes) of the pi_stream_dvr Set-Cookie."""
    return set_cookies(response)["pi_stream_dvr"]


def test_login_sets_a_host_wide_cookie_that_passes_the_check(service):
    before = int(time.time())
    response = service.login("shed", "alice", PASSWORDS["alice"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == "alice" and before + 3600 <= body["expires"] <= int(time.time()) + 3600
    token, attributes = dvr_cookie(response)
    assert attributes == {"Path": "/", "Max-Age": "3600", "HttpOnly": "", "SameSite": "Strict", "Secure": ""}
    assert token == service.token("shed", "alice", body["expires"])  # the documented formula, exactly
    check = requests.get(f"{service.url}/auth/dvr/shed/check", headers={"Cookie": f"pi_stream_dvr={token}"}, timeout=10)
    assert check.status_code == 204 and check.content == b""
    assert service.check("shed", None) == 401


def test_a_browser_that_logged_in_before_goes_first_for_the_dvr_password_check(tmp_path, monkeypatch):
    """As for the appliance's login: a flood of wrong passwords must not lock the DVR's owner out.
    The service runs in this process, so the test can hold its bcrypt queue in a known state."""
    install_service(tmp_path)
    module = load_auth_module(tmp_path / SERVICE, monkeypatch)
    auth = tmp_path / "etc/pi-stream/auth"
    server = module.make_server(module.Config.load(auth / "access.json", auth / "viewers", auth / "token.key"), f"127.0.0.1:{free_port()}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = "http://{}:{}".format(*server.server_address)

    def dvr_login(dvr: str, cookie: str = "") -> requests.Response:
        headers = {"Cookie": f"pi_stream_device={cookie}"} if cookie else {}
        return requests.post(f"{url}/auth/dvr/{dvr}/login", json={"user": "alice", "password": PASSWORDS["alice"]}, headers=headers, timeout=30)

    try:
        first = dvr_login("shed")
        assert first.status_code == 200, first.text
        device, attributes = set_cookies(first)["pi_stream_device"]
        # Sent back only to the DVR's login path (on the DVR's own host name), never to the DVR.
        assert attributes["Path"] == "/_pi_stream/auth/login" and attributes["Max-Age"] == str(180 * 86400)
        assert "HttpOnly" in attributes and attributes["SameSite"] == "Strict"
        appliance = requests.post(f"{url}/auth/login", json={"user": "alice", "password": PASSWORDS["alice"]}, timeout=30)
        appliance_device = set_cookies(appliance)["pi_stream_device"][0]

        monkeypatch.setattr(module, "CHECK_WAIT_SECONDS", 0.05)
        checker = server.RequestHandlerClass.checker
        checker.priority_waiting = 1  # a known device is waiting: everyone else waits behind it
        assert dvr_login("shed").status_code == 503
        assert dvr_login("shed", cookie="alice~9999999999~forged").status_code == 503
        # Another DVR's device cookie, or the appliance's, is not this DVR's: no place ahead.
        assert dvr_login("barn", cookie=device).status_code == 503
        assert dvr_login("shed", cookie=appliance_device).status_code == 503
        known = dvr_login("shed", cookie=device)
        assert known.status_code == 200, known.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_wrong_password_and_a_viewer_off_the_list_get_the_same_401(service):
    wrong = service.login("shed", "alice", "not the password")
    off_the_list = service.login("shed", "bob", PASSWORDS["bob"])  # right password, but shed lets only alice in
    nobody = service.login("shed", "mallory", "whatever password")
    assert wrong.status_code == off_the_list.status_code == nobody.status_code == 401
    assert wrong.json() == off_the_list.json() == nobody.json()
    assert "Set-Cookie" not in off_the_list.headers
    barn = service.login("barn", "bob", PASSWORDS["bob"])
    assert barn.status_code == 200, barn.text
    assert service.check("barn", dvr_cookie(barn)[0]) == 204


def test_a_token_is_good_for_its_own_dvr_only(service):
    token = dvr_cookie(service.login("shed", "alice", PASSWORDS["alice"]))[0]
    assert service.check("shed", token) == 204
    # A cookie that is there and does not pass is 403 (nginx logs it for fail2ban); none at all is 401 (the login page).
    assert service.check("barn", token) == 403
    assert service.check("barn", None) == 401
    # Bob on the shed's list nowhere: even a correctly signed token does not let him in.
    assert service.check("shed", service.token("shed", "bob", int(time.time()) + 600)) == 403


def test_forged_expired_and_stale_tokens_are_refused(service):
    expires = int(time.time()) + 600
    good = service.token("barn", "alice", expires)
    assert service.check("barn", good) == 204
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert service.check("barn", tampered) == 403
    assert service.check("barn", good.replace(f"~{expires}~", f"~{expires + 3600}~")) == 403
    # Expired: an honest browser's old cookie, sent to the login page, not counted as an attack.
    assert service.check("barn", service.token("barn", "alice", int(time.time()) - 1)) == 401
    # Signed with another hash: what a token from before a password change looks like.
    assert service.check("barn", service.token("barn", "alice", expires, stored_hash=service.hashes["bob"])) == 403
    assert service.check("barn", f"alice~{'9' * 5000}~x") == 403  # refused, not a crash
    assert service.check("barn", "garbage") == 403


def test_unknown_dvr_is_404_to_log_into_and_refused_to_check(service):
    assert service.login("attic", "alice", PASSWORDS["alice"]).status_code == 404
    assert service.check("attic", service.token("attic", "alice", int(time.time()) + 600)) == 403
    assert service.check("attic", None) == 401
    assert requests.post(f"{service.url}/auth/dvr/attic/logout", json={}, timeout=10).status_code == 404


def test_login_wants_json(service):
    form = requests.post(f"{service.url}/auth/dvr/shed/login", data={"user": "alice", "password": "x"}, timeout=10)
    assert form.status_code == 415
    assert requests.post(f"{service.url}/auth/dvr/shed/login", json={"user": "alice"}, timeout=10).status_code == 400


def test_logout_clears_the_cookie(service):
    response = requests.post(f"{service.url}/auth/dvr/shed/logout", json={}, timeout=10)
    assert response.status_code == 200
    value, attributes = dvr_cookie(response)
    assert value == "" and attributes["Path"] == "/" and attributes["Max-Age"] == "0"


def test_the_appliance_login_is_unchanged(service):
    response = requests.post(f"{service.url}/auth/login", json={"user": "bob", "password": PASSWORDS["bob"]}, timeout=30)
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["cameras"]] == ["garden"]
    cookies = response.headers["Set-Cookie"]
    assert "pi_stream_session=bob~" in cookies and "Path=/auth/;" in cookies and "Path=/hls/garden/" in cookies
    assert "pi_stream_dvr" not in cookies
    # An appliance session cookie is not a DVR cookie.
    session = cookies.split("pi_stream_session=")[1].split(";")[0]
    assert service.check("barn", session) == 403
