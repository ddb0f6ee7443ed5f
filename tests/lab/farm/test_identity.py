"""Logging in by identity on the farm (issue 25): OpenID Connect through a real provider, Cloudflare Access's assertion.

The farm's site logs in by identity from its first deploy (conftest.py): the provider runs in a client namespace
of its own on the lab bridge ("idp"), the Pis trust its test CA (login.ca_file) and fetch its discovery document
and keys themselves. Viewers who must be told apart by address (and may be banned) run curl or Chromium in
namespaces of their own. The OpenID Connect flow by curl is the browser's: GET /auth/oidc/start at the Pi, the
provider's form posted (from this process: the provider is on the lab bridge), the provider's redirect back
followed with the same cookie jar. Proxy-mode assertions are signed here with the key the provider publishes at
Cloudflare Access's path, and sent as Cloudflare sends them.

Runs between test_appliance and test_viewer_auth (tests/conftest.py LAB_GROUPS); its last test deploys once,
taking an email away from a viewer, and leaves the site so for test_viewer_auth.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
import urllib.parse
from dataclasses import dataclass

import pytest
import yaml

from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.site import load_site
from pi_stream.workflows import run_deploy
from tests.conftest import wait_until
from tests.identity_provider import SigningKeys
from tests.lab.conftest import run_in, ssh
from tests.lab.farm.conftest import (
    ALL_CAMERAS_EMAIL,
    ALL_CAMERAS_VIEWER,
    IDENTITY_EMAIL,
    IDENTITY_OTHER_EMAIL,
    IDENTITY_VIEWER,
    STRANGER_EMAIL,
    Curl,
    banned,
    namespace_curl,
    oidc_client_secret,
)

AUTH_LOG = "/var/log/pi-stream/auth.log"
ASSERTION_HEADER = "Cf-Access-Jwt-Assertion"
# nginx's login limit (pi_stream_login: 10r/m, burst 5) covers the identity routes too: once an address has spent
# its burst, one attempt per 6 s.
LOGIN_LIMIT_SECONDS = 6.5
LIMITED_TRIES = 8


def url_of(lab_env, index: int) -> str:
    return f"https://{lab_env.hosts[index].address}"


def limited(action, what: str):
    """action()'s answer ((status, ...) or status), tried again while nginx's login limit says 429; bounded."""
    for _ in range(LIMITED_TRIES):
        answer = action()
        if (answer[0] if isinstance(answer, tuple) else answer) != 429:
            return answer
        time.sleep(LOGIN_LIMIT_SECONDS)
    raise AssertionError(f"{what}: still 429 after {LIMITED_TRIES} tries {LOGIN_LIMIT_SECONDS} s apart")


def proxy_login(curl: Curl, assertion: str, *headers: str) -> tuple[int, str]:
    """POST /auth/proxy as Cloudflare Access forwards a request: its signed assertion in a header (and `headers`)."""
    extra = [arg for header in headers for arg in ("-H", header)]
    return limited(lambda: curl.request("/auth/proxy", "-H", f"{ASSERTION_HEADER}: {assertion}", *extra, body={}), "proxy login")


@dataclass(frozen=True)
class OidcLogin:
    status: int
    page: str
    callback: str  # the path and query the provider sent the browser back to
    state: str

    @property
    def answer(self) -> tuple[int, str]:
        return self.status, self.page


def oidc_login(curl: Curl, identity_provider, sub: str) -> OidcLogin:
    """The authorization code flow as a browser walks it: the Pi's start, the provider's form, the Pi's callback."""
    status, location = limited(lambda: curl.redirect("/auth/oidc/start"), "/auth/oidc/start")
    assert status == 302 and location.startswith(f"{identity_provider.url}/"), (status, location)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert query["redirect_uri"] == f"{curl.base}/auth/oidc/callback" and query["code_challenge_method"] == "S256", query
    answer = identity_provider.mock.session.post(location, data={"sub": sub}, allow_redirects=False, timeout=10)
    back = answer.headers.get("Location", "")
    assert answer.status_code == 302 and back.startswith(f"{curl.base}/auth/oidc/callback?"), (answer.status_code, back)
    callback = back.removeprefix(curl.base)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))["state"]
    status, page = limited(lambda: curl.request(callback), "/auth/oidc/callback")
    return OidcLogin(status, page, callback, state)


def refusals_logged(lab_env, address: str) -> int:
    """The auth log's login-failed lines for `address` on pi1 (what fail2ban's pi-stream-auth jail counts)."""
    line = f"login-failed client={address} status=401"
    return int(ssh(lab_env, "pi1", f"grep -cF {shlex.quote(line)} {AUTH_LOG}").stdout.strip() or 0)


@pytest.fixture(scope="module")
def ann_phone(first_deploy, lab_env, identity_provider, tmp_path_factory):
    """ann's phone, logged in through the provider (OpenID Connect) with curl: (its curl, the login)."""
    with namespace_curl(lab_env, "anns-phone", url_of(lab_env, 0), tmp_path_factory.mktemp("anns-phone")) as (phone, _client):
        yield phone, oidc_login(phone, identity_provider, IDENTITY_EMAIL)


def test_chromium_signs_in_through_the_provider_and_plays_her_one_camera(first_deploy, lab_env, identity_provider):
    from pi_stream import lab

    started = time.monotonic()
    with lab.client_namespace(lab_env, "anns-laptop") as client:
        ran = run_in(client, sys.executable, "-m", "tests.lab.identity_viewer",
                     url_of(lab_env, 0) + "/", IDENTITY_EMAIL, "barn", timeout=240)
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    print(f"Chromium: signed in through the provider and playing in {time.monotonic() - started:.1f} s; steps {seen.get('steps')}")
    assert seen["event"] == "playing", json.dumps(seen)
    assert seen["button"] == "Sign in with Lab ID", seen
    assert seen["url"].rstrip("/") == url_of(lab_env, 0), "back on the player page, not the provider's or the callback's"
    assert seen["user"] == IDENTITY_VIEWER and seen["titles"] == ["barn"], seen
    assert seen["advanced"] > 0.5 and (seen["width"], seen["height"]) == (640, 360) and seen["spread"] > 50, seen


def test_a_viewer_limited_to_one_camera_gets_only_that_one(ann_phone):
    phone, login = ann_phone
    assert login.status == 200, login.page[:500]
    assert 'http-equiv="refresh"' in login.page and 'url=/"' in login.page, "the callback's page moves on to / by itself"
    status, body = phone.request("/auth/session")
    assert status == 200, body
    session = json.loads(body)
    assert session["user"] == IDENTITY_VIEWER and [c["name"] for c in session["cameras"]] == ["barn"], session
    assert phone.request("/hls/barn/index.m3u8")[0] == 200
    assert phone.request("/hls/yard/index.m3u8")[0] == 401, "no cookie for a camera ann may not watch"
    barn = phone.media_token("barn")
    assert phone.request("/hls/yard/index.m3u8", "-b", f"pi_stream_media={barn}")[0] == 403


def test_proxy_login_as_cloudflare_sends_it_opens_every_camera(first_deploy, lab_env, identity_provider, tmp_path):
    """erin may watch every camera: each Pi's own. Cloudflare forwards the signed assertion with an unsigned email
    header beside it (and its CF_Authorization cookie): the header is not what the Pi believes."""
    assertion = identity_provider.assertion(ALL_CAMERAS_EMAIL)
    with namespace_curl(lab_env, "erins-laptop", url_of(lab_env, 0), tmp_path) as (pi1, client):
        pi2 = Curl(client, url_of(lab_env, 1), tmp_path / "erins-laptop-pi2.jar")
        # The unsigned header alone is no identity: nothing to check (400), and not counted as a failure either.
        assert proxy_login_without_assertion(pi1, f"Cf-Access-Authenticated-User-Email: {ALL_CAMERAS_EMAIL}") == 400
        for curl, cameras in ((pi1, ["barn", "yard"]), (pi2, ["gate"])):
            status, body = proxy_login(curl, assertion, f"Cf-Access-Authenticated-User-Email: {IDENTITY_EMAIL}",
                                       f"Cookie: CF_Authorization={assertion}")
            assert status == 200, (curl.base, body)
            session = json.loads(body)
            assert session["user"] == ALL_CAMERAS_VIEWER, "the signed email, not the header beside it"
            assert [c["name"] for c in session["cameras"]] == cameras, (curl.base, session)
            for camera in cameras:
                assert curl.request(f"/hls/{camera}/index.m3u8")[0] == 200, (curl.base, camera)
        assert refusals_logged(lab_env, client.address) == 0


def proxy_login_without_assertion(curl: Curl, *headers: str) -> int:
    extra = [arg for header in headers for arg in ("-H", header)]
    return limited(lambda: curl.request("/auth/proxy", *extra, body={}), "proxy login without an assertion")[0]


def test_refused_identity_logins_are_logged_and_banned(first_deploy, lab_env, identity_provider, site_dir, ann_phone, tmp_path):
    """Each refusal is a 401, a line in pi1's auth log, and a failure fail2ban counts like a wrong password:
    maxretry of them and the address is banned."""
    maxretry = load_site(site_dir).fail2ban.maxretry
    now = int(time.time())
    # The same key id as the published key, another key: the signature is what must fail.
    impostor = SigningKeys.rsa(identity_provider.keys.kid)
    _phone, ann_login = ann_phone
    assert ann_login.status == 200, "the replay below replays a login that worked"
    with namespace_curl(lab_env, "stranger", url_of(lab_env, 0), tmp_path) as (stranger, client):
        # (what, the reason the service gives in its answer, the attempt: (status, answer))
        cases = [
            ("an identity no viewer has", "this identity is not a viewer here",
             lambda: oidc_login(stranger, identity_provider, STRANGER_EMAIL).answer),
            ("a token for another audience", "the token is for another audience",
             lambda: proxy_login(stranger, identity_provider.assertion(ALL_CAMERAS_EMAIL, aud=["another-application"]))),
            ("an expired token", "the token has expired",
             lambda: proxy_login(stranger, identity_provider.assertion(ALL_CAMERAS_EMAIL, iat=now - 3600, nbf=now - 3600, exp=now - 600))),
            ("a token signed by another key", "signature does not match",
             lambda: proxy_login(stranger, identity_provider.assertion(ALL_CAMERAS_EMAIL, keys=impostor))),
            # ann's callback URL and her state cookie, sent again: the state is single use.
            ("a replayed state", "already used login state",
             lambda: limited(lambda: stranger.request(ann_login.callback, "-b", f"pi_stream_oidc={ann_login.state}"), "the replayed callback")),
        ]
        assert len(cases) > maxretry
        try:
            for number, (what, reason, attempt) in enumerate(cases, start=1):
                before = refusals_logged(lab_env, client.address)
                status, answer = attempt()
                assert status == 401 and reason in answer, (what, status, answer[:500])
                wait_until(lambda before=before: refusals_logged(lab_env, client.address) == before + 1, f"the auth log's line for {what}",
                           seconds=10)
                if number == maxretry:
                    wait_until(lambda: banned(lab_env, "pi-stream-auth", client.address), f"the ban after {maxretry} refusals",
                               seconds=30)
                    assert stranger.request("/")[0] == 0, "banned: pi1 no longer answers this address"
                    ssh(lab_env, "pi1", "fail2ban-client", "set", "pi-stream-auth", "unbanip", client.address)
                    assert stranger.request("/")[0] == 200, "unbanned"
                elif number < maxretry:
                    # fail2ban keeps counting for findtime (600 s), across runs: on a lab kept from a run a few minutes
                    # ago (PI_STREAM_KEEP_LAB=1), that run's refusals from this address still count.
                    assert not banned(lab_env, "pi-stream-auth", client.address), (
                        f"banned after {number} refusals (a lab kept from a run less than findtime ago still counts its refusals)")
        finally:
            ssh(lab_env, "pi1", "fail2ban-client", "set", "pi-stream-auth", "unbanip", client.address)


def test_an_email_taken_off_a_viewer_ends_its_cookies_at_the_next_deploy(first_deploy, lab_env, identity_provider, site_dir, tmp_path):
    """Last in this module: it deploys a changed site (ann keeps her other address), and test_viewer_auth goes on from it."""
    with namespace_curl(lab_env, "anns-tablet", url_of(lab_env, 0), tmp_path) as (tablet, _client):
        status, body = proxy_login(tablet, identity_provider.assertion(IDENTITY_EMAIL))
        assert status == 200, body
        assert tablet.request("/hls/barn/index.m3u8")[0] == 200
        old_media, old_session = tablet.media_token("barn"), tablet.cookie("pi_stream_session", "/auth/")
        site_yml = site_dir / "site.yml"
        data = yaml.safe_load(site_yml.read_text())
        data["viewers"][IDENTITY_VIEWER]["emails"] = [IDENTITY_OTHER_EMAIL]
        site_yml.write_text(yaml.safe_dump(data, sort_keys=False))
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        # -v: Ansible's own output too, where a task without no_log would show what it copied.
        result = run_deploy(load_site(site_dir), Console(out=out, err=err), verbosity=1)
        print(f"deploy taking {IDENTITY_EMAIL} off {IDENTITY_VIEWER}: {time.monotonic() - started:.0f} s")
        assert result.status == ExitStatus.OK, result.failures
        said = out.getvalue() + err.getvalue()
        assert "Install the OIDC client secret" in said, said[-2000:]  # the capture holds the task that copies it
        assert oidc_client_secret(site_dir) not in said, "the OIDC client secret is in the deploy's output"
        assert tablet.request("/hls/barn/index.m3u8", "-b", f"pi_stream_media={old_media}")[0] == 403, "the old media cookie"
        assert tablet.request("/auth/session", "-b", f"pi_stream_session={old_session}")[0] == 403, "the old session"
        assert proxy_login(tablet, identity_provider.assertion(IDENTITY_EMAIL))[0] == 401, "the address taken off"
        status, body = proxy_login(tablet, identity_provider.assertion(IDENTITY_OTHER_EMAIL))
        assert status == 200 and json.loads(body)["user"] == IDENTITY_VIEWER, body
        assert tablet.request("/hls/barn/index.m3u8")[0] == 200, "the address she kept: new cookies that work"

