"""Viewer auth end to end on the lab: logins, per-camera tokens, player links, expiry, bans, revocation.

Clients that must be told apart by address (and may be banned) run curl in
their own network namespace on the lab network; a request body with a
password goes to curl on stdin, never in its argv.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import requests
import yaml
from urllib3.exceptions import InsecureRequestWarning

from pi_stream import credentials
from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.verify import Http
from pi_stream.workflows import run_deploy
from tests.lab.conftest import ssh
from tests.lab.farm.conftest import LIMITED_PASSWORD, LIMITED_VIEWER, Curl, banned, namespace_curl, oidc_client_secret

AUTH_SCRIPT = "/usr/local/lib/pi-stream/pi_stream_auth.py"


@pytest.fixture
def pi1_url(lab_env) -> str:
    return f"https://{lab_env.hosts[0].address}"


def wait_for_ban(curl: Curl, action, seconds: float) -> bool:
    """Repeat the failing action until the host stops answering this address (status 0), bounded in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if action() == 0 and curl.request("/")[0] == 0:
            return True
        time.sleep(0.5)
    return False


def test_limited_viewer_gets_only_their_cameras(first_deploy, lab_env, pi1_url, tmp_path):
    with namespace_curl(lab_env, "bobs-phone", pi1_url, tmp_path) as (phone, _client):
        status, body = phone.login(LIMITED_VIEWER, LIMITED_PASSWORD)
        assert status == 200, body
        assert [c["name"] for c in json.loads(body)["cameras"]] == ["barn"]
        assert phone.request("/hls/barn/index.m3u8")[0] == 200
        assert phone.request("/hls/yard/index.m3u8")[0] == 401, "no cookie for a camera bob may not watch"
        stolen = phone.media_token("barn")
        assert phone.request("/hls/yard/index.m3u8", "-b", f"pi_stream_media={stolen}")[0] == 403
        assert phone.request("/auth/link", body={"camera": "yard"})[0] == 403


def test_player_link_plays_in_ffmpeg_without_cookies(first_deploy, lab_env, pi1_url, viewer):
    """What VLC or ffplay does with the page's "Player link": a URL alone, segments fetched relative to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        session = Http()  # keeps verify=False even when REQUESTS_CA_BUNDLE is set
        session.verify = False
        assert session.post(f"{pi1_url}/auth/login", json=dict(zip(("user", "password"), viewer, strict=True)), timeout=30).ok
        link = session.post(f"{pi1_url}/auth/link", json={"camera": "barn"}, timeout=10).json()["url"]
    assert "/v/alice~" in link and link.endswith("/barn/index.m3u8")
    probe = subprocess.run(
        ["ffmpeg", "-v", "error", "-tls_verify", "0", "-i", link, "-t", "3", "-f", "null", "-"],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    streams = subprocess.run(
        ["ffprobe", "-v", "error", "-tls_verify", "0", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height", "-of", "json", link],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(streams.stdout)["streams"][0] == {"codec_name": "h264", "width": 640, "height": 360}


def test_expired_link_is_refused(first_deploy, lab_env, pi1_url):
    made = ssh(lab_env, "pi1", "python3", AUTH_SCRIPT, "link", "alice", "barn", "--seconds", "3")
    assert made.returncode == 0, made.stderr
    url = pi1_url + made.stdout.strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        assert requests.get(url, verify=False, timeout=10).status_code == 200
        time.sleep(4)
        assert requests.get(url, verify=False, timeout=10).status_code == 410


def test_one_typo_then_the_right_password_is_not_banned(first_deploy, lab_env, pi1_url, viewer, tmp_path):
    with namespace_curl(lab_env, "typo", pi1_url, tmp_path) as (laptop, client):
        assert laptop.login(viewer[0], viewer[1] + "x")[0] == 401
        assert laptop.login(*viewer)[0] == 200
        time.sleep(3)  # fail2ban reads the log within a second or two
        assert not banned(lab_env, "pi-stream-auth", client.address)
        assert laptop.request("/hls/barn/index.m3u8")[0] == 200


def test_repeated_wrong_passwords_are_banned_through_nftables(first_deploy, lab_env, pi1_url, site_dir, viewer, tmp_path):
    maxretry = load_site(site_dir).fail2ban.maxretry
    with namespace_curl(lab_env, "guesser", pi1_url, tmp_path) as (guesser, client):
        try:
            statuses = [guesser.login("alice", f"guess {attempt}")[0] for attempt in range(maxretry)]
            assert statuses == [401] * maxretry
            assert wait_for_ban(guesser, lambda: guesser.login("alice", "one more guess")[0], seconds=30), "not banned"
            assert banned(lab_env, "pi-stream-auth", client.address)
            assert client.address in ssh(lab_env, "pi1", "nft", "list", "ruleset").stdout
            # Everyone else still gets in.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                assert requests.get(f"{pi1_url}/", verify=False, timeout=10).status_code == 200
        finally:
            ssh(lab_env, "pi1", "fail2ban-client", "set", "pi-stream-auth", "unbanip", client.address)


def test_forged_media_tokens_are_banned(first_deploy, lab_env, pi1_url, tmp_path):
    with namespace_curl(lab_env, "forger", pi1_url, tmp_path) as (forger, client):
        try:
            counter = iter(range(1000))

            def forge() -> int:
                token = f"alice~9999999999~{next(counter):022d}"
                return forger.request("/hls/barn/index.m3u8", "-b", f"pi_stream_media={token}")[0]

            assert forge() == 403
            # The media jail allows 4 x maxretry (12 here); the refusal log takes 10 at once, then 6 a minute.
            assert wait_for_ban(forger, forge, seconds=60), "not banned"
            assert banned(lab_env, "pi-stream-media", client.address)
        finally:
            ssh(lab_env, "pi1", "fail2ban-client", "set", "pi-stream-media", "unbanip", client.address)


def test_no_secret_in_the_bundle_ansible_output_or_readable_files(first_deploy, lab_env, site_dir, viewer):
    key = ssh(lab_env, "pi1", "cat", "/etc/pi-stream/auth/token.key").stdout.strip()
    token_keys = ssh(lab_env, "pi1", "cat", "/etc/pi-stream/auth/nginx-token-keys.conf").stdout
    derived = [line.split('"')[3] for line in token_keys.splitlines() if line.strip().startswith('"')]
    assert len(key) == 64 and len(derived) == 6  # alice: barn, yard; bob: barn; ann: barn; erin: barn, yard
    hashes = list(credentials.read_htpasswd(credentials.viewers_path(site_dir)).values())
    client_secret = oidc_client_secret(site_dir)
    secrets = [key, *derived, *hashes, viewer[1], LIMITED_PASSWORD, client_secret]
    written = [p for p in (site_dir / ".pi-stream").rglob("*") if p.is_file()]
    assert any("runs" in p.parts for p in written) and any("bundle" in p.parts for p in written)
    for path in written:
        text = path.read_text(errors="replace")
        leaked = [s[:6] + "…" for s in secrets if s in text]
        assert not leaked, f"{path} holds a secret: {leaked}"
    # One string: ssh hands the command to the remote shell, which would split the format.
    modes = ssh(lab_env, "pi1", "stat -c '%n %a %U' /etc/pi-stream/auth/token.key /etc/pi-stream/auth/viewers"
                " /etc/pi-stream/auth/nginx-token-keys.conf /etc/pi-stream/auth/oidc-client-secret").stdout
    assert len(modes.splitlines()) == 4 and all(line.endswith(" 600 root") for line in modes.splitlines()), modes
    assert ssh(lab_env, "pi1", "test", "-e", "/etc/nginx/pi-stream/viewers.htpasswd").returncode == 1
    # The OIDC client secret wherever it is on the Pi (its file, a log, a left-over temporary file): each holder
    # root's and readable by root alone, but for the login service's own credential (systemd's LoadCredential=,
    # readable by the service's dynamic user alone). The pattern comes from the Pi's own file.
    holders = ssh(lab_env, "pi1", "grep -rlsF -f /etc/pi-stream/auth/oidc-client-secret /etc /var /run /root /home /tmp /usr/local /srv /opt"
                  " | xargs -r stat -c '%a %u %n'", timeout=120).stdout.splitlines()
    service_uid = ssh(lab_env, "pi1", "ps -o uid= -p $(systemctl show -p MainPID --value pi-stream-auth)").stdout.strip()
    assert service_uid.isdigit() and service_uid != "0", service_uid
    credential = f"400 {service_uid} /run/credentials/pi-stream-auth.service/oidc-client-secret"
    assert "600 0 /etc/pi-stream/auth/oidc-client-secret" in holders and credential in holders, holders
    readable = [line for line in holders if line != credential and not (line.split()[0] in ("600", "400") and line.split()[1] == "0")]
    assert not readable, f"the OIDC client secret is readable by others than root: {readable}"

RETIRED_WEB_FILES = ("/var/www/pi-stream/static/retired.js", "/var/www/pi-stream/old-pages/index.html")


def test_removed_viewer_loses_access_at_the_next_deploy(first_deploy, lab_env, pi1_url, site_dir, tmp_path):
    """Last in this file: it changes the shared site.

    The same deploy also stands for an upgrade: web files an earlier release shipped, and this one does not,
    are removed from /var/www/pi-stream (the nginx_rtmp role owns it), and nothing else there."""
    planted = " && ".join(f"mkdir -p {shlex.quote(str(Path(f).parent))} && echo old > {shlex.quote(f)}" for f in RETIRED_WEB_FILES)
    assert ssh(lab_env, "pi1", planted).returncode == 0
    with namespace_curl(lab_env, "bobs-tablet", pi1_url, tmp_path) as (phone, _client):
        assert phone.login(LIMITED_VIEWER, LIMITED_PASSWORD)[0] == 200
        assert phone.request("/hls/barn/index.m3u8")[0] == 200
        credentials.remove_user(site_dir, LIMITED_VIEWER)
        site_yml = site_dir / "site.yml"
        data = yaml.safe_load(site_yml.read_text())
        # bob's entry only: the viewers who log in by identity (test_identity) stay, and login.oidc with them.
        del data["viewers"][LIMITED_VIEWER]
        site_yml.write_text(yaml.safe_dump(data, sort_keys=False))
        result = run_deploy(load_site(site_dir), Console(show_progress=False))
        assert result.status == ExitStatus.OK, result.failures
        assert phone.request("/hls/barn/index.m3u8")[0] == 403, "the old cookie still opens the camera"
        assert phone.request("/auth/session")[0] == 403, "the removed viewer's session cookie is refused (and logged)"
        assert phone.login(LIMITED_VIEWER, LIMITED_PASSWORD)[0] == 401
    listing = ssh(lab_env, "pi1", "find", "/var/www/pi-stream", "-mindepth", "1").stdout.split()
    on_pi = {path.removeprefix("/") for path in listing}
    shipped = {target for target in render_site(load_site(site_dir))["pi1"] if target.startswith("var/www/pi-stream/")}
    parents = {str(parent) for target in shipped for parent in Path(target).parents}
    assert on_pi - shipped - parents == set(), "files the bundle does not ship are still served"
    assert shipped <= on_pi
