"""Remote viewing through relays (site topology relay), end to end: a Pi, two relays and a remote viewer.

A lab of its own ("relaytest", three hosts): pi1 is the Pi, pi2 and pi3 are the
relays (inventory group pi_stream_relays), each in its own network namespace on
the lab bridge; the remote viewer is a namespace of its own too. The bridge
forwards nothing between the viewer and the Pi (lab.unreachable), as the
internet does not route to a home behind NAT: the viewer reaches the relays
only, and the Pi's WireGuard link to them is the one way in. "Gone" is the same
tool on one host's port (lab.network_gone): a relay whose VPS went dark, or a
Pi whose uplink dropped, with no goodbye on any connection.

Viewers also log in by identity here (issue 25), with no deploy of their own: the site sits behind an
identity-aware proxy (login.proxy, Cloudflare Access's kind) from its first deploy. The proxy's key server
(tests/identity_provider.py) runs in a client namespace of this lab that the relays reach; the tests sign the
assertions Cloudflare would forward. dora has only an email (no password) and is one of relay.admins.

The tests run in order, each from the state the previous one left.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pi_stream import credentials
from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.status import read_host_status, relay_summary
from pi_stream.site import load_site
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.identity_provider import AUDIENCE
from tests.lab.conftest import REPO, booted_lab, identity_provider_beside, remote_browser, run_in, ssh
from tests.lab.relays import agent_state, on, playing_through, pushes, tx_bytes, url_of

LAB = "relaytest"
PI, RELAY1, RELAY2 = "pi1", "pi2", "pi3"
CAMERA = "porch"
CAROL, CAROL_PASSWORD = "carol", "carol leaves at the end"
FAILBACK_SECONDS = 5
# Stated in the README ("Remote viewing through relays"): from a relay gone (or back) to the
# picture moving again in a player that was watching. Measured in bench/relay.
RESUME_BOUND_SECONDS = 45
# nginx's login limit (pi_stream_login, 10r/m): once an address has spent its burst, one attempt per 6 s.
LOGIN_LIMIT_SECONDS = 6.5
PI_OFFLINE_SECONDS = 60
DVR_USER, DVR_PASSWORD, DVR_PORT = "admin", "dvr-password", 9443
# A viewer who logs in by identity alone (behind the identity-aware proxy), and is one of the relays' admins.
DORA, DORA_EMAIL, DORA_LATER_EMAIL = "dora", "dora@example.org", "dora@elsewhere.example"
AUTH_LOG = "/var/log/pi-stream/auth.log"


@pytest.fixture(scope="module")
def relay_lab():
    with booted_lab(LAB, hosts=3) as state:
        yield state


@pytest.fixture(scope="module")
def dvr(relay_lab, tmp_path_factory):
    """The fake Hikvision-style DVR, wired to the Pi only (its second port)."""
    from pi_stream import lab
    from pi_stream.lab.dvr import fake_dvr

    with lab.network_behind(relay_lab, PI, "dvr") as device, fake_dvr(
        device.exec_prefix, device.address, 80, 7681, DVR_USER, DVR_PASSWORD, tmp_path_factory.mktemp("dvr")
    ) as server:
        yield server


@pytest.fixture(scope="module")
def identity_provider(relay_lab, tmp_path_factory):
    """The identity-aware proxy's key server (Cloudflare Access's /cdn-cgi/access/certs) on the lab bridge."""
    with identity_provider_beside(relay_lab, tmp_path_factory.mktemp("identity-provider")) as provider:
        yield provider


@pytest.fixture(scope="module")
def site_dir(relay_lab, dvr, identity_provider, tmp_path_factory) -> Path:
    site = {
        "name": "cabin",
        "topology": "relay",
        "relay": {"relays": [{"host": RELAY1}, {"host": RELAY2}], "failback_seconds": FAILBACK_SECONDS, "admins": [VIEWER, DORA]},
        "cameras": [{"name": CAMERA, "source": {"type": "testsrc"}, "width": 320, "height": 180, "fps": 15, "bitrate_kbps": 400}],
        # Behind the Pi on its second port, published on a port of its own: the relays route their admins to it.
        "dvr_proxy": {"barn": {"host": dvr.address, "https_port": DVR_PORT}},
        "viewers": {DORA: {"emails": [DORA_EMAIL]}},
        "login": {"proxy": {"type": "cloudflare_access", "team_domain": identity_provider.team_domain, "audience": AUDIENCE},
                  "ca_file": "identity-ca.pem"},
    }
    directory = write_site(tmp_path_factory.mktemp("relay") / "cabin", site,
                           files={"identity-ca.pem": identity_provider.ca_file.read_text(encoding="utf-8")})
    # The keys come from the hosts themselves: none may be there before the first deploy.
    shutil.rmtree(directory / ".pi-stream" / "wireguard")
    credentials.add_user(directory, CAROL, CAROL_PASSWORD)
    relay_lab.write_inventory(directory / "inventory.yml", relays=(RELAY1, RELAY2))
    return directory


@pytest.fixture(scope="module")
def first_deploy(site_dir):
    started = time.monotonic()
    result = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert result.status == ExitStatus.OK, result.failures
    print(f"first deploy of a Pi and two relays: {time.monotonic() - started:.0f} s")
    return result


@pytest.fixture(scope="module")
def remote(first_deploy, relay_lab):
    """The remote viewer's namespace, which the lab bridge keeps from the Pi (and only from the Pi)."""
    from pi_stream import lab

    with lab.client_namespace(relay_lab, "remote") as client:
        pairs = [(lab.host_port(relay_lab, PI), lab.client_port(relay_lab, client))]
        with lab.unreachable(relay_lab, "internet", pairs):
            yield RemoteViewer(client.exec_prefix, client.address, functools.partial(run_in, client))


@dataclass(frozen=True)
class RemoteViewer:
    exec_prefix: list[str]
    address: str
    run: Callable[..., subprocess.CompletedProcess]


def client_says(remote, *args: str, timeout: float = 180) -> str:
    try:
        return remote.run(sys.executable, "-m", "tests.lab.relay_client", *args, timeout=timeout).stdout.strip()
    except subprocess.CalledProcessError as error:  # say why: relay_client's traceback, not only its exit status
        raise AssertionError(f"relay_client {args[0]} failed ({error.returncode}): {error.stderr[-3000:]}") from None


def test_keys_are_made_on_each_host_and_a_rerun_changes_nothing(first_deploy, relay_lab, site_dir):
    bundle = site_dir / ".pi-stream" / "bundle"
    texts = [p.read_bytes() for p in bundle.rglob("*") if p.is_file()]
    for host in (PI, RELAY1, RELAY2):
        assert on(relay_lab, host, "stat -c '%U %a' /etc/wireguard/pistream.key") == "root 600"
        private = on(relay_lab, host, "cat /etc/wireguard/pistream.key").encode()
        assert not any(private in text for text in texts), f"{host}'s private key is in the bundle"
        assert not any(private in p.read_bytes() for p in site_dir.rglob("*") if p.is_file()), f"{host}'s private key left the host"
        public = on(relay_lab, host, "wg pubkey < /etc/wireguard/pistream.key")
        assert (site_dir / ".pi-stream" / "wireguard" / f"{host}.pub").read_text().strip() == public
        # What render wrote is, byte for byte, what wg-quick reads.
        rendered = (bundle / host / "etc/wireguard/pistream.conf").read_bytes()
        assert on(relay_lab, host, "sha256sum /etc/wireguard/pistream.conf").split()[0] == hashlib.sha256(rendered).hexdigest()
    # A relay is no appliance: no capture; the Pi runs the agent, the relays do not.
    assert ssh(relay_lab, RELAY1, "systemctl cat pi-stream-capture.service").returncode != 0
    assert on(relay_lab, PI, "systemctl is-active pi-stream-relay.service wg-quick@pistream.service") == "active\nactive"
    assert ssh(relay_lab, RELAY2, "test -e /etc/pi-stream/relay.json").returncode == 1
    # The relays share one site key (the first relay's), the Pi keeps its own.
    keys = {h: on(relay_lab, h, "sha256sum /etc/pi-stream/auth/token.key").split()[0] for h in (PI, RELAY1, RELAY2)}
    assert keys[RELAY1] == keys[RELAY2] != keys[PI]

    again = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert again.status == ExitStatus.OK, again.failures
    assert again.changed == 0, f"a re-run changed {again.changed} things; see {again.run_dir}"


def test_verify_passes_on_the_pi_and_the_relays(first_deploy, site_dir):
    site = load_site(site_dir)
    result = verify_site(site, render_site(site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    checks = {(c.host, c.name) for c in result.checks}
    assert {(PI, "relay in use"), (PI, "tunnel to every relay"), (RELAY1, "tunnel to every Pi"), (RELAY2, "standby")} <= checks
    assert (RELAY1, f"{CAMERA}: playlist live and advancing") in checks


def test_the_viewer_reaches_the_relays_and_not_the_pi(remote, relay_lab):
    # The control: the Pi is up (this machine reaches it), the viewer reaches both relays, and not the Pi.
    assert from_this_machine("reach", url_of(relay_lab, PI) + "/") == "200"
    assert client_says(remote, "reach", url_of(relay_lab, RELAY1) + "/") == "200"
    assert client_says(remote, "reach", url_of(relay_lab, RELAY2) + "/") == "200"
    assert client_says(remote, "reach", url_of(relay_lab, PI) + "/") == "unreachable"


def from_this_machine(*args: str) -> str:
    """tests/lab/relay_client.py run here, on the lab bridge's own address (the home network's view of the Pi)."""
    return subprocess.run([sys.executable, "-m", "tests.lab.relay_client", *args], capture_output=True, text=True,
                          timeout=60, check=True, cwd=REPO, stdin=subprocess.DEVNULL).stdout.strip()


@pytest.fixture(scope="module")
def browser(remote, relay_lab):
    with remote_browser(remote, url_of(relay_lab, RELAY1) + "/", VIEWER, VIEWER_PASSWORD, CAMERA, "hls") as viewer:
        yield viewer


def test_chromium_plays_through_the_first_relay(browser, relay_lab):
    playing = browser.line(120)
    assert playing["event"] == "playing", json.dumps(playing)
    assert playing["relay"] == url_of(relay_lab, RELAY1) and (playing["width"], playing["height"]) == (320, 180), playing
    assert agent_state(relay_lab)["active"] == RELAY1
    assert pushes(relay_lab) == 1, "one push, to the relay in use"


def test_the_upload_is_one_stream_whatever_the_number_of_viewers(browser, remote, relay_lab):
    """Measured on the Pi's own interface: 1 viewer (the browser), then 10 (9 more players), the same upload."""
    assert browser.line(30, "report")["advanced"] > 0.5
    window = 20

    def upload_and_relay_bytes(extra_viewers: int) -> tuple[int, int]:
        """Bytes sent by the Pi and by relay 1 over exactly `window` seconds, with the extra players already running."""
        pullers = None
        if extra_viewers:
            pullers = subprocess.Popen(
                [*remote.exec_prefix, sys.executable, "-m", "tests.lab.relay_client", "pull", url_of(relay_lab, RELAY1) + "/",
                 VIEWER, VIEWER_PASSWORD, CAMERA, str(extra_viewers), str(window + 8)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            )
            time.sleep(4)  # logged in, fetching
        pi_before, relay_before = tx_bytes(relay_lab, PI), tx_bytes(relay_lab, RELAY1)
        time.sleep(window)
        sent = tx_bytes(relay_lab, PI) - pi_before, tx_bytes(relay_lab, RELAY1) - relay_before
        if pullers is not None:
            out, _ = pullers.communicate(timeout=60)
            pulled = json.loads(out)
            assert pulled["segments"] >= extra_viewers * 5, pulled
        return sent

    one_pi, one_relay = upload_and_relay_bytes(0)
    ten_pi, ten_relay = upload_and_relay_bytes(9)
    print(f"Pi upload in {window} s: {one_pi} B with 1 viewer, {ten_pi} B with 10; relay: {one_relay} B, {ten_relay} B")
    assert abs(ten_pi - one_pi) / one_pi < 0.05, (one_pi, ten_pi)
    assert ten_relay > 5 * one_relay, "the relay did send the ten viewers their copies"


def test_relay1_gone_the_player_resumes_through_relay2(browser, relay_lab, site_dir):
    from pi_stream import lab

    with lab.network_gone(relay_lab, RELAY1):
        took = playing_through(browser, url_of(relay_lab, RELAY2), RESUME_BOUND_SECONDS)
        print(f"failover: playing through relay 2 {took:.1f} s after relay 1 went dark")
        state = agent_state(relay_lab)
        assert state["active"] == RELAY2 and not state["relays"][RELAY1]["up"], state
        assert pushes(relay_lab) == 1
        # What the owner sees: `pi-stream status` names the relay in use and the one gone.
        said = relay_summary(read_host_status(load_site(site_dir), PI).relay)
        assert said.startswith(f"pushing to {RELAY2} ({RELAY1} DOWN") and "; moved " in said, said


def test_relay1_back_the_pi_and_the_player_return_to_it(browser, relay_lab):
    took = playing_through(browser, url_of(relay_lab, RELAY1), FAILBACK_SECONDS + RESUME_BOUND_SECONDS)
    print(f"failback: playing through relay 1 {took:.1f} s after it came back (failback_seconds {FAILBACK_SECONDS})")
    assert agent_state(relay_lab)["active"] == RELAY1
    assert pushes(relay_lab) == 1


def test_the_link_survives_the_pis_network_gone_for_a_minute(browser, relay_lab):
    from pi_stream import lab

    with lab.network_gone(relay_lab, PI):
        wait_until(lambda: not agent_state(relay_lab)["relays"][RELAY1]["up"], "the Pi sees its relays gone", seconds=20)
        time.sleep(PI_OFFLINE_SECONDS)
    took = playing_through(browser, url_of(relay_lab, RELAY1), RESUME_BOUND_SECONDS)
    print(f"after {PI_OFFLINE_SECONDS} s without the Pi's network: playing again {took:.1f} s after it came back")
    assert agent_state(relay_lab)["active"] == RELAY1 and pushes(relay_lab) == 1


def test_an_admin_reaches_the_pis_status_page_and_dvr_through_the_relay_behind_its_login(remote, relay_lab):
    admin_url = url_of(relay_lab, RELAY1) + ":8443/"
    seen = json.loads(client_says(remote, "route", admin_url, VIEWER, VIEWER_PASSWORD, "/status.html",
                                  VIEWER, VIEWER_PASSWORD, f"/camera/{CAMERA}/status.json"))
    assert seen["before"] == 302 and seen["location"].endswith(":8443/_pi_stream/login.html"), "nothing of the Pi before the relay's login"
    assert (seen["gate"], seen["after"]) == (200, 200) and "status.js" in seen["page"], seen
    assert seen["pi_login"] == 200 and json.loads(seen["pi_path"])["state"] == "live", "the Pi's own login and status, through"
    # A viewer who is no admin gets no further than the relay's login.
    refused = json.loads(client_says(remote, "route", admin_url, CAROL, CAROL_PASSWORD, "/status.html"))
    assert (refused["gate"], refused["after"]) == (401, 302), refused
    # The DVR the Pi proxies, on its own port at the relay: the relay's login, then the DVR's page.
    through = json.loads(client_says(remote, "route", f"{url_of(relay_lab, RELAY1)}:{DVR_PORT}/", VIEWER, VIEWER_PASSWORD,
                                     "/doc/page/login.asp"))
    assert (through["before"], through["gate"], through["after"]) == (302, 200, 200), through
    assert "<title>Fake DVR</title>" in through["page"], through["page"][:200]


def refusals_logged(relay_lab, host: str, address: str) -> int:
    """The auth log's login-failed lines for `address` on `host` (what its pi-stream-auth jail counts)."""
    line = f"login-failed client={address} status=401"
    return int(ssh(relay_lab, host, f"grep -cF '{line}' {AUTH_LOG}").stdout.strip() or 0)


def proxy_login(viewer, url: str, assertion: str, *camera: str) -> dict:
    """relay_client's proxy login from `viewer`'s namespace, tried again while nginx's login limit answers 429 (the
    remote viewer has logged in at the relays many times by now); bounded."""
    for _ in range(8):
        seen = json.loads(client_says(viewer, "proxy", url, assertion, *camera))
        if seen["status"] != 429:
            return seen
        time.sleep(LOGIN_LIMIT_SECONDS)
    raise AssertionError(f"proxy login at {url}: still 429 after 8 tries")


def password_login(viewer, url: str, user: str, password: str) -> str:
    """relay_client's password login, tried again on 429 like proxy_login."""
    for _ in range(8):
        status = client_says(viewer, "login", url, user, password)
        if status != "429":
            return status
        time.sleep(LOGIN_LIMIT_SECONDS)
    raise AssertionError(f"login at {url}: still 429 after 8 tries")


def cookie(seen: dict, kind: str, path: str) -> str:
    """A cookie relay_client's proxy login set: the relay's KIND cookie (session, media) on PATH."""
    found = [value for key, value in seen["cookies"].items() if key == f"pi_stream_relay_{kind} {path}"]
    assert len(found) == 1, seen["cookies"]
    return found[0]


def test_a_viewer_logs_in_by_identity_at_each_relay_and_watches_there(remote, relay_lab, identity_provider):
    """dora, who has no password, behind the identity-aware proxy: the assertion Cloudflare would forward logs her in
    at either relay, and the cookies it sets open the camera there (the relay in use has its picture)."""
    active = agent_state(relay_lab)["active"]
    assertion = identity_provider.assertion(DORA_EMAIL)
    for host in (RELAY1, RELAY2):
        url = url_of(relay_lab, host) + "/"
        seen = proxy_login(remote, url, assertion, CAMERA)
        assert (seen["status"], seen["user"], seen["cameras"]) == (200, DORA, [CAMERA]), (host, seen)
        if host == active:
            assert (seen["playlist"], seen["segment"]) == (200, 200) and seen["segment_bytes"] > 1000, (host, seen)
        # Her media cookie alone, and none: the relay's own check (secure_link) lets hers through and nobody else.
        media = cookie(seen, "media", f"/hls/{CAMERA}/")
        playlist = f"/hls/{CAMERA}/index.m3u8"
        with_cookie = client_says(remote, "fetch", url, playlist, f"pi_stream_relay_media={media}")
        expected = {"200"} if host == active else {"200", "404"}  # the standby relay may have no stream to serve
        print(f"{host} ({'in use' if host == active else 'standby'}): dora's media cookie alone gets {with_cookie}")
        assert with_cookie in expected, (host, with_cookie)
        assert client_says(remote, "fetch", url, playlist) == "401", host


def test_an_assertion_for_another_audience_is_refused_and_logged_at_the_relay(first_deploy, relay_lab, identity_provider):
    """A token the proxy signed for another Access application: 401, and a line in that relay's auth log for its jail.
    From a client of its own, so the remote viewer's failure count at the relay stays as the later tests expect."""
    from pi_stream import lab

    foreign = identity_provider.assertion(DORA_EMAIL, aud=["another-application"])
    with lab.client_namespace(relay_lab, "other-app") as client:
        other = RemoteViewer(client.exec_prefix, client.address, functools.partial(run_in, client))
        before = refusals_logged(relay_lab, RELAY2, client.address)
        seen = proxy_login(other, url_of(relay_lab, RELAY2) + "/", foreign)
        assert seen["status"] == 401 and not seen["cookies"], seen
        wait_until(lambda: refusals_logged(relay_lab, RELAY2, client.address) == before + 1, "the refusal in relay 2's auth log",
                   seconds=10)
        assert refusals_logged(relay_lab, RELAY1, client.address) == 0, "logged where it happened, not elsewhere"


def test_an_admin_passes_the_relays_admin_port_by_identity(remote, relay_lab, identity_provider):
    """dora is one of relay.admins with no password: the proxy's assertion at the admin port's own login sets the
    relay's cookie for the route, and the Pi's status page comes through it."""
    admin_url = url_of(relay_lab, RELAY1) + ":8443/"
    for _ in range(8):  # bounded: nginx's login limit covers the admin port's login too
        seen = json.loads(client_says(remote, "proxy-route", admin_url, identity_provider.assertion(DORA_EMAIL), "/status.html"))
        if seen["gate"] != 429:
            break
        time.sleep(LOGIN_LIMIT_SECONDS)
    assert seen["before"] == 302 and seen["location"].endswith(":8443/_pi_stream/login.html"), seen
    assert (seen["gate"], seen["after"]) == (200, 200) and "status.js" in seen["page"], seen
    assert seen["cookies"] == ["pi_stream_relay_dvr"], seen


def test_wrong_passwords_at_a_relay_are_banned_there(remote, relay_lab, site_dir):
    site = load_site(site_dir)
    relay2 = url_of(relay_lab, RELAY2) + "/"
    statuses = [client_says(remote, "login", relay2, VIEWER, "wrong password") for _ in range(site.fail2ban.maxretry)]
    assert set(statuses) == {"401"}, statuses
    wait_until(lambda: remote.address in on(relay_lab, RELAY2, "fail2ban-client status pi-stream-auth"), "the ban at relay 2",
               seconds=30)
    try:
        assert client_says(remote, "reach", relay2) == "unreachable", "banned at relay 2"
        assert client_says(remote, "reach", url_of(relay_lab, RELAY1) + "/") == "200", "relay 1 has its own jail"
    finally:
        on(relay_lab, RELAY2, f"fail2ban-client set pi-stream-auth unbanip {remote.address}")


def test_wrong_admin_passwords_at_a_relays_route_to_the_pi_are_banned_there(first_deploy, relay_lab, site_dir):
    """Security review finding 1 on a relay: the login in front of each Pi's pages (relay.admins) is a password
    check from the internet, so it is limited, logged and banned like /auth/login; and the same check is not
    reachable through the relay's own /auth/, where nothing limited or logged it. The guesser is a client of its
    own: its spent login limit and its ban touch no other test's viewer."""
    from pi_stream import lab

    site = load_site(site_dir)
    relay2 = url_of(relay_lab, RELAY2)
    admin = f"{relay2}:8443/"
    with lab.client_namespace(relay_lab, "guesser") as client:
        guesser = RemoteViewer(client.exec_prefix, client.address, functools.partial(run_in, client))
        assert client_says(guesser, "login", relay2 + "/", VIEWER, "wrong password", f"/auth/dvr/{PI}/login") == "404"
        statuses: list[str] = []
        for attempt in range(4 * site.fail2ban.maxretry):  # bounded; ends at maxretry refusals
            statuses.append(client_says(guesser, "login", admin, VIEWER, f"guess {attempt}", "/_pi_stream/auth/login"))
            if statuses.count("401") == site.fail2ban.maxretry:
                break
            if statuses[-1] == "429":
                time.sleep(LOGIN_LIMIT_SECONDS)
        assert statuses.count("401") == site.fail2ban.maxretry and set(statuses) <= {"401", "429"}, statuses
        wait_until(lambda: guesser.address in on(relay_lab, RELAY2, "fail2ban-client status pi-stream-auth"), "the ban at relay 2",
                   seconds=30)
        try:
            assert client_says(guesser, "reach", admin) == "unreachable", "banned on the admin port too"
        finally:
            on(relay_lab, RELAY2, f"fail2ban-client set pi-stream-auth unbanip {guesser.address}")


def test_a_viewer_removed_from_the_site_is_refused_on_the_pi_and_every_relay(remote, relay_lab, site_dir, identity_provider):
    """carol's password goes, and dora's address: her viewer keeps only another one, and she is no admin any more.
    One deploy; then dora's old session is refused at every relay, and so is the proxy's assertion for that address.
    dora logs in from a laptop of her own: the remote viewer's login limit at relay 2 is spent by the guesses above."""
    from pi_stream import lab

    with lab.client_namespace(relay_lab, "doras-laptop") as client:
        laptop = RemoteViewer(client.exec_prefix, client.address, functools.partial(run_in, client))
        sessions = {}
        for host in (RELAY1, RELAY2):
            url = url_of(relay_lab, host) + "/"
            assert password_login(remote, url, CAROL, CAROL_PASSWORD) == "200", host
            seen = proxy_login(laptop, url, identity_provider.assertion(DORA_EMAIL))
            assert seen["status"] == 200, (host, seen)
            sessions[host] = cookie(seen, "session", "/auth/")
            assert client_says(laptop, "fetch", url, "/auth/session", f"pi_stream_relay_session={sessions[host]}") == "200", host
        credentials.remove_user(site_dir, CAROL)
        site_yml = site_dir / "site.yml"
        data = yaml.safe_load(site_yml.read_text())
        # Another address, not no viewer: a site with login.proxy must name somebody it admits.
        data["viewers"][DORA]["emails"] = [DORA_LATER_EMAIL]
        data["relay"]["admins"].remove(DORA)
        site_yml.write_text(yaml.safe_dump(data, sort_keys=False))
        started = time.monotonic()
        result = run_deploy(load_site(site_dir), Console(show_progress=False))
        print(f"deploy removing carol and dora's address: {time.monotonic() - started:.0f} s")
        assert result.status == ExitStatus.OK, result.failures
        for host in (RELAY1, RELAY2):
            url = url_of(relay_lab, host) + "/"
            assert password_login(remote, url, CAROL, CAROL_PASSWORD) == "401", host
            assert client_says(laptop, "fetch", url, "/auth/session", f"pi_stream_relay_session={sessions[host]}") == "403", host
            assert proxy_login(laptop, url, identity_provider.assertion(DORA_EMAIL))["status"] == 401, host
        # The address she kept still logs her in as a viewer, and no longer past the admin port.
        assert proxy_login(laptop, url_of(relay_lab, RELAY1) + "/", identity_provider.assertion(DORA_LATER_EMAIL))["status"] == 200
        admin = json.loads(client_says(laptop, "proxy-route", url_of(relay_lab, RELAY1) + ":8443/",
                                       identity_provider.assertion(DORA_LATER_EMAIL), "/status.html"))
        assert (admin["gate"], admin["after"]) == (401, 302), admin
    assert from_this_machine("login", url_of(relay_lab, PI) + "/", CAROL, CAROL_PASSWORD) == "401"
