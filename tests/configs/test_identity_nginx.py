"""Identity logins with the real programs, on loopback: the rendered nginx config and the login service together.

The twin of test_auth_flow (passwords) for issue 25's logins: a site with login.oidc, login.proxy (Cloudflare
Access), its own CA (login.ca_file) and `password: false`, rendered and installed under a temporary root as the
roles install it; nginx and pi_stream_auth.py (under /usr/bin/python3, Debian's PyJWT) run from that tree.
The providers run in this process over TLS on 127.0.0.1, from a CA the test makes (tests/identity_provider.py):
oidc-provider-mock, a real OpenID provider, as login.oidc's issuer, and a hand-made key server as the Access
team domain, whose keys sign the proxy's assertions. A DVR (the fake one) sits behind the appliance's login on
an HTTPS port of its own. Each test sends from its own 127.0.0.X address, so nginx's per-address login limit of
one test does not spill into another. Nothing leaves loopback and nothing is looked up by name.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pi_stream.lab.dvr import FakeDvr, fake_dvr
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.configs.tree import (
    RootedAppliance,
    auth_tool_argv,
    loopback_session,
    need_free_ports,
    port_open,
    prepare_rooted_appliance,
    rooted_paths,
    running,
)
from tests.identity_provider import (
    clean_environment,
    ALICE,
    AUDIENCE,
    HandMadeProvider,
    MockProvider,
    RecordingApp,
    SigningKeys,
    Tls,
    https_server,
    local_session,
    make_tls,
    oidc_provider_app,
)

# Ports no other configs test uses (test_auth_flow: 18443/18080, test_dvr_flow: 18543/18544..., ...).
HTTPS_PORT, HTTP_PORT, DVR_PORT = 18843, 18480, 18943
URL, DVR_URL = f"https://127.0.0.1:{HTTPS_PORT}", f"https://127.0.0.1:{DVR_PORT}"
DORA, STRANGER = "dora@example.org", "stranger@example.org"
CLIENT_ID, CLIENT_SECRET = "pi-stream", "the client secret, never logged"
ASSERTION = "Cf-Access-Jwt-Assertion"
DVR_USER, DVR_PASSWORD = "admin", "dvr:p@ss/word"
LOGIN_PAGE = "/doc/page/login.asp"
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\n7.ts\n"
LOGIN_FAILED = re.compile(r"\S+ login-failed client=(127\.0\.0\.\d+) status=401")
# The mock's ID tokens come through authlib's deprecated get_jwt_config: the mock's business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")



class IdentityAppliance(RootedAppliance):
    """The tree's login service with the OIDC client secret where the viewer_auth role puts it, and no proxy
    from the environment (systemd gives the unit none); its journal (stderr) kept in a file."""

    def argv(self, *args: str) -> list[str]:
        return auth_tool_argv(self.root, "--oidc-client-secret", str(self.auth / "oidc-client-secret"), *args)

    @property
    def journal_file(self) -> Path:
        return self.root / "var/log/pi-stream/journal.log"

    def tool(self, *args: str) -> str:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30, check=True, env=clean_environment()).stdout

    def start_service(self) -> None:
        self.stop_service()
        with self.journal_file.open("a") as journal:
            self.service = subprocess.Popen(self.argv("serve", "--listen", str(self.socket)), stderr=journal, env=clean_environment())
        wait_until(self.socket.exists, "the login service's socket", seconds=10, interval=0.05)

    def journal(self) -> str:
        return self.journal_file.read_text()

    def login_failures(self) -> list[str]:
        """The addresses of the auth log's login-failed lines, in order."""
        return [m.group(1) for line in self.auth_log.read_text().splitlines() if (m := LOGIN_FAILED.fullmatch(line))]


@dataclass
class Lab:
    appliance: IdentityAppliance
    mock: MockProvider
    keys: HandMadeProvider  # the Access team domain: its key set signs the proxy's assertions
    dvr: FakeDvr
    site: dict

    def browser(self, source: str) -> requests.Session:
        """A browser on 127.0.0.X trusting the appliance's certificate alone, with no proxy from the environment."""
        session = loopback_session(source, str(self.appliance.certificate))
        session.trust_env = False
        return session

    def assertion(self, **claims) -> str:
        return self.keys.keys[0].sign(self.keys.claims(**claims))


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("identity-nginx-tls"))


@pytest.fixture(scope="module")
def mock(tls) -> Iterator[MockProvider]:
    app = RecordingApp(oidc_provider_app())
    with https_server(app, tls) as url:
        provider = MockProvider(url, app, local_session(tls))
        for email in (ALICE, DORA, STRANGER):
            provider.add_user(email, {"email": email, "email_verified": True})
        yield provider


@pytest.fixture(scope="module")
def access_keys(tls) -> Iterator[HandMadeProvider]:
    provider = HandMadeProvider(keys=[SigningKeys.ec("access-key")])
    with https_server(provider, tls) as url:
        provider.url = url
        yield provider


@pytest.fixture(scope="module")
def dvr(tmp_path_factory) -> Iterator[FakeDvr]:
    with fake_dvr([], "127.0.0.1", 0, 0, DVR_USER, DVR_PASSWORD, tmp_path_factory.mktemp("fake-dvr")) as server:
        yield server


def site_yml(mock: MockProvider, access_keys: HandMadeProvider, dvr: FakeDvr) -> dict:
    team_domain = urllib.parse.urlsplit(access_keys.url).netloc  # 127.0.0.1:PORT
    return {
        "name": "identity",
        "web": {"https_port": HTTPS_PORT, "http_port": HTTP_PORT},
        "cameras": [{"name": "garden", "source": {"type": "testsrc"}}, {"name": "door", "source": {"type": "testsrc"}}],
        # alice: a line in viewers.htpasswd (write_site) and an identity; dora: an identity only.
        "viewers": {VIEWER: {"emails": [ALICE], "cameras": ["garden"]}, "dora": {"emails": [DORA], "cameras": ["door"]}},
        "login": {
            "password": False,
            "ca_file": "identity-ca.pem",
            "oidc": {"issuer": mock.url, "client_id": CLIENT_ID, "client_secret_file": "oidc-client-secret", "name": "Example"},
            "proxy": {"type": "cloudflare_access", "team_domain": team_domain, "audience": AUDIENCE},
        },
        "dvr_proxy": {"shed": {"host": "127.0.0.1", "preset": "generic", "http_port": dvr.http_port, "https_port": DVR_PORT,
                               "viewer_auth": True, "login_paths": []}},
        "fail2ban": {"maxretry": 3},
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tls, mock, access_keys, dvr) -> Iterator[Lab]:
    need_free_ports(HTTPS_PORT, HTTP_PORT, DVR_PORT)
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban-regex not installed: run scripts/install.sh")
    base = tmp_path_factory.mktemp("identity-nginx")
    site = site_yml(mock, access_keys, dvr)
    site_dir = write_site(base / "site", site, files={"identity-ca.pem": tls.ca_file.read_text(), "oidc-client-secret": CLIENT_SECRET + "\n"})
    root = base / "root"
    prepare_rooted_appliance(site_dir, root)
    # What the viewer_auth role does with the client secret: copied to the auth directory, root's alone.
    secret = root / "etc/pi-stream/auth/oidc-client-secret"
    shutil.copy(site_dir / "oidc-client-secret", secret)
    secret.chmod(0o600)
    for camera in ("garden", "door"):
        hls = root / "run/pi-stream/hls" / camera
        hls.mkdir(parents=True)
        (hls / "index.m3u8").write_text(PLAYLIST)
        (hls / "7.ts").write_bytes(b"\x47" * 188 * 10)
    with running(IdentityAppliance(root, site_dir), HTTPS_PORT) as appliance:
        wait_until(lambda: port_open(DVR_PORT), "nginx on the DVR's port", seconds=10, interval=0.05)
        yield Lab(appliance, mock, access_keys, dvr, site)


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def oidc_login(lab: Lab, browser: requests.Session, base: str, start_path: str, sub: str,
               before_callback=None) -> tuple[dict[str, str], str, requests.Response]:
    """A browser's round through the provider: /start on nginx, the provider's form submitted as `sub`, then the
    callback URL opened on nginx with the state cookie the browser got (`before_callback(url)` first, if given).
    Returns /start's parameters to the provider, the callback URL and the callback's answer."""
    started = browser.get(f"{base}{start_path}", allow_redirects=False, timeout=10)
    assert started.status_code == 302, started.text
    location = started.headers["Location"]
    assert location.startswith(f"{lab.mock.url}/oauth2/authorize?"), location
    params = query_of(location)
    returned = lab.mock.authorize(location, sub=sub)
    callback = f"{params['redirect_uri']}?{urllib.parse.urlencode(returned)}"
    if before_callback is not None:
        before_callback(callback)
    return params, callback, browser.get(callback, allow_redirects=False, timeout=10)


def set_cookies(response: requests.Response) -> list[tuple[str, str, str]]:
    """(name, value, path) of every Set-Cookie header, one by one (requests joins them with commas)."""
    found = []
    for header in response.raw.headers.getlist("Set-Cookie"):
        name_value, *attributes = header.split("; ")
        name, _, value = name_value.partition("=")
        path = next((a.partition("=")[2] for a in attributes if a.startswith("Path=")), "")
        found.append((name, value, path))
    return found


def test_the_rendered_tree_trusts_the_sites_ca_inside_the_root(lab):
    """access.json names the CA where the role installs it (under the root here), with the site's file in it."""
    access = json.loads((lab.appliance.auth / "access.json").read_text())
    ca_file = lab.appliance.auth / "identity-ca.pem"
    assert access["ca_file"] == str(ca_file)
    assert ca_file.read_text() == (lab.appliance.site_dir / "identity-ca.pem").read_text()
    assert access["password_login"] is False and access["identities"] == {ALICE: VIEWER, DORA: "dora"}
    assert access["proxy"]["issuer"] == lab.keys.url and access["oidc"]["issuer"] == lab.mock.url
    assert CLIENT_SECRET not in (lab.appliance.auth / "access.json").read_text()


def test_an_oidc_login_through_nginx_opens_alices_camera(lab):
    browser = lab.browser("127.0.0.10")

    def elsewhere(callback: str) -> None:
        """The callback URL opened in another browser (login CSRF): without this browser's state cookie, refused."""
        assert lab.browser("127.0.0.12").get(callback, allow_redirects=False, timeout=10).status_code == 401

    params, callback, answer = oidc_login(lab, browser, URL, "/auth/oidc/start", ALICE, before_callback=elsewhere)
    # nginx passed the browser's Host (with the port) and the scheme on: the provider sends it back here.
    assert params["redirect_uri"] == f"{URL}/auth/oidc/callback"
    assert answer.status_code == 200, answer.text
    assert '<meta http-equiv="refresh" content="0; url=/">' in answer.text
    assert "Location" not in answer.headers
    # no-store from the service and again from nginx (requests joins the two headers): never cached.
    assert set(answer.headers["Cache-Control"].split(", ")) == {"no-store"} and "Strict-Transport-Security" in answer.headers
    cookies = set_cookies(answer)
    assert ("pi_stream_oidc", "", "/auth/oidc/callback") in cookies  # the state, used up
    assert {path for name, _, path in cookies if name == "pi_stream_media"} == {"/hls/garden/", "/camera/garden/"}
    assert [path for name, value, path in cookies if name == "pi_stream_session" and value] == ["/auth/"]
    # The code went to the token endpoint with the client secret the role installed.
    form, authorization = lab.mock.app.token_requests[-1]
    assert form["code"] == query_of(callback)["code"] and authorization.startswith("Basic ")
    assert f"{VIEWER} logged in as '{ALICE}' (OpenID Connect)" in lab.appliance.journal()

    session = browser.get(f"{URL}/auth/session", timeout=10)
    assert session.status_code == 200, session.text
    assert session.json()["user"] == VIEWER and [c["name"] for c in session.json()["cameras"]] == ["garden"]
    playlist = browser.get(f"{URL}/hls/garden/index.m3u8", timeout=10)
    assert playlist.status_code == 200 and playlist.text == PLAYLIST
    assert browser.get(f"{URL}/hls/garden/7.ts", timeout=10).status_code == 200
    # Her token is for the garden: nginx's secure_link refuses it for the door (no key for alice/door).
    garden = next(c.value for c in browser.cookies if c.name == "pi_stream_media" and c.path == "/hls/garden/")
    door = lab.browser("127.0.0.10").get(f"{URL}/hls/door/index.m3u8", cookies={"pi_stream_media": garden}, timeout=10)
    assert door.status_code == 403
    # Without the login, nothing.
    assert lab.browser("127.0.0.11").get(f"{URL}/hls/garden/index.m3u8", timeout=10).status_code == 401


def test_refusals_are_logged_for_fail2ban_and_a_missing_header_is_not(lab):
    oidc_source, proxy_source = "127.0.0.20", "127.0.0.21"
    assert oidc_source not in lab.appliance.login_failures() and proxy_source not in lab.appliance.login_failures()
    browser = lab.browser(oidc_source)
    # An identity the provider vouches for, which no viewer has.
    _, _, stranger = oidc_login(lab, browser, URL, "/auth/oidc/start", STRANGER)
    assert stranger.status_code == 401 and "not a viewer here" in stranger.text
    assert not [name for name, value, _ in set_cookies(stranger) if name in ("pi_stream_session", "pi_stream_media")]
    # A state used once, sent again with its cookie: the callback URL replayed after alice's login.
    replayer = lab.browser(oidc_source)
    _, callback, first = oidc_login(lab, replayer, URL, "/auth/oidc/start", ALICE)
    assert first.status_code == 200, first.text
    state = query_of(callback)["state"]
    replayed = lab.browser(oidc_source).get(callback, cookies={"pi_stream_oidc": state}, allow_redirects=False, timeout=10)
    assert replayed.status_code == 401, replayed.text
    assert "pi_stream_session" not in replayed.headers.get("Set-Cookie", "")

    proxy = lab.browser(proxy_source)
    # No header at all: nothing to check (the proxy is not in front), a 400 that fail2ban never sees.
    bare = proxy.post(f"{URL}/auth/proxy", json={}, timeout=10)
    assert bare.status_code == 400 and bare.json() == {"error": "no identity from the proxy"}
    # An assertion signed with the team's key, for another Access application.
    foreign = proxy.post(f"{URL}/auth/proxy", json={}, headers={ASSERTION: lab.assertion(aud=["another-application"])}, timeout=10)
    assert foreign.status_code == 401 and "audience" in foreign.json()["error"]
    assert "Set-Cookie" not in foreign.headers

    # nginx writes a line after it has answered; the requests went one after another, so the proxy's 401 is last.
    wait_until(lambda: lab.appliance.login_failures().count(proxy_source) == 1, "the proxy refusal's auth log line", seconds=5)
    failures = lab.appliance.login_failures()
    assert failures.count(oidc_source) == 2, failures
    assert failures.count(proxy_source) == 1, failures  # the 400 is not there
    # The jail's filter, as rendered, over the log nginx wrote: each refusal is a failure of its client's address.
    jail_filter = lab.appliance.root / "etc/fail2ban/filter.d/pi-stream-auth.conf"
    found = subprocess.run(["fail2ban-regex", "-o", "ip", str(lab.appliance.auth_log), str(jail_filter)],
                           capture_output=True, text=True, timeout=60)
    matched = found.stdout.split()
    assert (matched.count(oidc_source), matched.count(proxy_source)) == (2, 1), found.stdout + found.stderr
    assert sorted(matched) == sorted(lab.appliance.login_failures()), found.stdout
    for line in lab.appliance.auth_log.read_text().splitlines():
        assert "login-failed" not in line or LOGIN_FAILED.fullmatch(line), line


def test_the_identity_routes_are_behind_the_per_address_login_limit(lab):
    source = "127.0.0.30"
    browser = lab.browser(source)
    starts = [browser.get(f"{URL}/auth/oidc/start", allow_redirects=False, timeout=10).status_code for _ in range(10)]
    assert starts[:6] == [302] * 6, starts  # burst 5 + 1 at once
    assert set(starts[6:]) == {429}, starts
    # The same zone for each identity route, and the DVR's: the address is out of tries everywhere.
    assert browser.get(f"{URL}/auth/oidc/callback?code=x&state=y", timeout=10).status_code == 429
    assert browser.post(f"{URL}/auth/proxy", json={}, headers={ASSERTION: lab.assertion()}, timeout=10).status_code == 429
    assert browser.get(f"{DVR_URL}/_pi_stream/auth/oidc/start", allow_redirects=False, timeout=10).status_code == 429
    # Another address is not limited by this one's tries.
    assert lab.browser("127.0.0.31").post(f"{URL}/auth/proxy", json={}, headers={ASSERTION: lab.assertion()}, timeout=10).status_code == 200


def test_a_dvr_login_by_oidc_on_its_own_port(lab):
    browser = lab.browser("127.0.0.40")
    before = len(lab.dvr.requests_for(LOGIN_PAGE))
    stranger = browser.get(f"{DVR_URL}/", allow_redirects=False, timeout=10)
    assert stranger.status_code == 302 and stranger.headers["Location"] == f"{DVR_URL}/_pi_stream/login.html"
    form = browser.get(f"{DVR_URL}/_pi_stream/login.html", timeout=10).text
    assert 'href="/_pi_stream/auth/oidc/start"' in form and 'type="password"' not in form and "data-proxy-login" in form

    params, callback, answer = oidc_login(lab, browser, DVR_URL, "/_pi_stream/auth/oidc/start", ALICE)
    assert params["redirect_uri"] == f"{DVR_URL}/_pi_stream/auth/oidc/callback"
    # The provider's ?code=&state= went with the path to the service ($is_args$args), which exchanged that code.
    assert answer.status_code == 200, answer.text
    assert lab.mock.app.token_requests[-1][0]["code"] == query_of(callback)["code"]
    assert '<meta http-equiv="refresh" content="0; url=/">' in answer.text
    cookies = set_cookies(answer)
    assert [path for name, value, path in cookies if name == "pi_stream_dvr" and value] == ["/"]
    assert ("pi_stream_oidc", "", "/_pi_stream/auth/oidc/callback") in cookies
    assert not [name for name, _, _ in cookies if name in ("pi_stream_session", "pi_stream_media")]
    assert f"{VIEWER} logged in to DVR shed as '{ALICE}' (OpenID Connect)" in lab.appliance.journal()
    # Then the page: auth_request passes the cookie, the DVR answers (its redirect kept on this host and port).
    home = browser.get(f"{DVR_URL}/", allow_redirects=False, timeout=10)
    assert home.status_code == 302 and home.headers["Location"] == f"{DVR_URL}{LOGIN_PAGE}"
    page = browser.get(f"{DVR_URL}{LOGIN_PAGE}", timeout=10)
    assert page.status_code == 200 and "/doc/script/webvideo.js" in page.text
    seen = lab.dvr.requests_for(LOGIN_PAGE)
    assert len(seen) == before + 1 and "pi_stream_dvr" not in seen[-1].cookies


def test_a_dvr_login_by_proxy_assertion(lab):
    browser = lab.browser("127.0.0.41")
    login = browser.post(f"{DVR_URL}/_pi_stream/auth/proxy", json={}, headers={ASSERTION: lab.assertion(email=DORA)}, timeout=10)
    assert login.status_code == 200, login.text
    assert login.json()["user"] == "dora"
    assert [path for name, value, path in set_cookies(login) if name == "pi_stream_dvr" and value] == ["/"]
    page = browser.get(f"{DVR_URL}{LOGIN_PAGE}", timeout=10)
    assert page.status_code == 200 and "/doc/script/webvideo.js" in page.text
    # The appliance's route is not the DVR's: no DVR cookie from it, and the DVR's check refuses its cookies.
    other = lab.browser("127.0.0.41")
    appliance = other.post(f"{URL}/auth/proxy", json={}, headers={ASSERTION: lab.assertion(email=DORA)}, timeout=10)
    assert appliance.status_code == 200 and "pi_stream_dvr" not in {name for name, _, _ in set_cookies(appliance)}
    assert other.get(f"{DVR_URL}{LOGIN_PAGE}", allow_redirects=False, timeout=10).status_code == 302


def test_password_login_off_is_403_and_the_page_has_no_password_field(lab):
    browser = lab.browser("127.0.0.50")
    for url in (f"{URL}/auth/login", f"{DVR_URL}/_pi_stream/auth/login"):
        # alice's right password: refused all the same, and no cookie.
        answer = browser.post(url, json={"user": VIEWER, "password": VIEWER_PASSWORD}, timeout=30)
        assert answer.status_code == 403, (url, answer.text)
        assert answer.json() == {"error": "password login is turned off on this site"}
        assert "Set-Cookie" not in answer.headers
    page = browser.get(f"{URL}/", timeout=10)
    assert page.status_code == 200
    assert 'type="password"' not in page.text and 'name="user"' not in page.text
    assert 'href="/auth/oidc/start">Sign in with Example<' in page.text and "data-proxy-login" in page.text
    # The same site with passwords on renders the field: the check above looks where the field would be.
    on = dict(lab.site, login={**lab.site["login"], "password": True})
    site_dir = write_site(lab.appliance.root.parent / "site-passwords-on", on,
                          files={"identity-ca.pem": (lab.appliance.site_dir / "identity-ca.pem").read_text()})
    index = render_site(load_site(site_dir), rooted_paths(lab.appliance.root))["pi1"]["var/www/pi-stream/index.html"].content.decode()
    assert 'type="password"' in index
