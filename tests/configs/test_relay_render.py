"""Topology relay rendered: each relay's and the Pi's files checked by nginx -t, nft -c, wg-quick and systemd-analyze,
what a relay gets and does not, and the relay agent's choice of relay (its policy, run without a tunnel).

The site: the example `relay` (one Pi, two relays, an always-on camera and an
on-demand one, which stays on the LAN).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pi_stream.errors import RenderError
from pi_stream.render import TEMPLATES_DIR, render_site
from pi_stream.site import load_site
from tests.configs.tree import install_auth_secrets, install_tree, make_certificate
from tests.conftest import write_site

RELAYS = ("relay1", "relay2")


def rendered(directory: Path) -> dict[str, dict[str, str]]:
    bundle = render_site(load_site(directory))
    return {host: {target: f.content.decode() for target, f in files.items()} for host, files in bundle.items()}


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/install.sh (CI installs them)")


@pytest.mark.parametrize("host", RELAYS)
def test_nginx_accepts_a_relays_tree(make_site, short_root, host):
    need("nginx", "openssl")
    site_dir = install_tree(make_site, "relay", short_root, host=host)
    for sub in ("var/log/nginx", "var/log/pi-stream", "var/lib/nginx", "run/pi-stream/hls"):
        (short_root / sub).mkdir(parents=True, exist_ok=True)
    install_auth_secrets(site_dir, short_root)
    make_certificate(short_root)
    result = subprocess.run(["nginx", "-t", "-c", str(short_root / "etc/nginx/nginx.conf")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("host", ["pi1", *RELAYS])
def test_wg_quick_parses_the_tunnel_config(make_site, tmp_path, host):
    """wg-quick strip reads the file as `wg-quick up` will: [Interface] and [Peer] keys, addresses, the PostUp."""
    need("wg-quick")
    install_tree(make_site, "relay", tmp_path, host=host)
    config = tmp_path / "etc/wireguard/pistream.conf"
    result = subprocess.run(["wg-quick", "strip", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "PrivateKey" not in config.read_text(), "the private key stays in its own file on the host"
    peers = re.findall(r"^PublicKey = (\S+)$", result.stdout, re.M)
    assert len(peers) == (2 if host == "pi1" else 1)


def test_nft_accepts_a_relays_firewall_and_the_pis(make_site, tmp_path):
    need("nft")
    for host in ("pi1", "relay1"):
        root = tmp_path / host
        install_tree(make_site, "relay", root, host=host)
        ruleset = root / "etc/pi-stream/firewall.nft"
        result = subprocess.run(["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    relay = [line.strip() for line in (tmp_path / "relay1/etc/pi-stream/firewall.nft").read_text().splitlines()]
    # The web ports, the Pi's pages (8443) and its DVR (9443, WebSocket 7682) behind the relay's login, WireGuard.
    assert "tcp dport { 22, 80, 443, 8443, 9443, 7682 } accept" in relay and "udp dport { 51820 } accept" in relay
    assert 'iifname "pistream" ip saddr 10.77.0.0/24 tcp dport { 1935 } accept' in relay, "RTMP from the tunnel only"
    pi = (tmp_path / "pi1/etc/pi-stream/firewall.nft").read_text()
    assert "tcp dport { 22 } accept" in pi and "udp dport" not in pi, "the Pi listens for nothing from the internet"


def test_the_relay_agents_unit_verifies(make_site, tmp_path):
    need("systemd-analyze")
    install_tree(make_site, "relay", tmp_path, host="pi1")
    unit_dir = tmp_path / "etc/systemd/system"
    result = subprocess.run(
        ["systemd-analyze", "verify", "pi-stream-relay.service"], capture_output=True, text=True, timeout=60,
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    output = "\n".join(line for line in (result.stdout + result.stderr).splitlines() if "pi_stream_relay.py" not in line)
    assert result.returncode == 0 and not output.strip(), output


def test_a_relay_gets_the_viewers_side_only_and_the_pi_pushes_each_camera_once(make_site):
    files = rendered(make_site("relay"))
    for relay in RELAYS:
        targets = set(files[relay])
        # (fail2ban's filters are one file set; the DVR jail is enabled only where a DVR is proxied.)
        appliance_only = ("capture", "ovenmediaengine", "retention")
        assert not {t for t in targets if any(word in t for word in appliance_only)}, targets
        assert not {"var/www/pi-stream/status.html", "var/www/pi-stream/replay.html", "etc/pi-stream/relay.json"} & targets
        assert "etc/wireguard/pistream.conf" in targets and "var/www/pi-stream/index.html" in targets
        http = files[relay]["etc/nginx/pi-stream/http.conf"]
        assert "/camera/" not in http and "/metrics" not in http, "no snapshots, status or metrics of its own"
    rtmp = files["pi1"]["etc/nginx/pi-stream/rtmp.conf"]
    # porch once, to the service address; shed is on demand: it stays on the LAN.
    assert re.findall(r"^\s*push (\S+) name=(\S+);$", rtmp, re.M) == [("rtmp://10.77.0.254:1935/live", "porch")]
    assert "listen 127.0.0.1:1935;" in rtmp
    relay_rtmp = files["relay1"]["etc/nginx/pi-stream/rtmp.conf"]
    assert "allow publish 10.77.0.0/24;" in relay_rtmp and "deny play all;" in relay_rtmp and not re.search(r"^\s*push ", relay_rtmp, re.M)
    access = files["relay1"]["etc/pi-stream/auth/access.json"]
    assert '"porch"' in access and '"shed"' not in access


def test_a_relays_player_fails_over_to_the_other_relays_and_only_to_them(make_site):
    files = rendered(make_site("relay"))
    one, two = "https://cams.example.org", "https://198.51.100.20"
    page = files["relay1"]["var/www/pi-stream/index.html"]
    assert f'data-relays="{one} {two}"' in page and "status.html" not in page
    for relay, other in (("relay1", two), ("relay2", one)):
        headers = files[relay]["etc/nginx/pi-stream/headers.conf"]
        assert f"connect-src 'self' {other};" in headers
        http = files[relay]["etc/nginx/pi-stream/http.conf"]
        assert f'"{other}" $http_origin;' in http, "CORS for the other relay's page, on the media paths"
    assert "data-relays" not in files["pi1"]["var/www/pi-stream/index.html"]
    assert "connect-src" not in files["pi1"]["etc/nginx/pi-stream/headers.conf"]


def test_rendering_without_the_hosts_public_keys_says_which_and_how(make_site):
    directory = make_site("relay")
    (directory / ".pi-stream/wireguard/relay2.pub").unlink()
    (directory / ".pi-stream/wireguard/pi1.pub").write_text("not a key\n")
    with pytest.raises(RenderError) as error:
        render_site(load_site(directory))
    message = str(error.value)
    assert "relay2.pub: missing" in message and "pi1.pub: not a WireGuard public key" in message and "pi-stream deploy" in message


def test_a_site_without_relays_renders_no_tunnel(make_site):
    files = rendered(make_site("two-pis"))
    for host in files.values():
        assert not [t for t in host if "wireguard" in t or "relay" in t]
        assert "push rtmp://10.77" not in host["etc/nginx/pi-stream/rtmp.conf"]


# --- The relay agent's policy ---------------------------------------------------------


@pytest.fixture(scope="module")
def agent():
    path = TEMPLATES_DIR / "usr/local/lib/pi-stream/pi_stream_relay.py"
    spec = importlib.util.spec_from_file_location("pi_stream_relay", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pi_stream_relay"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("pi_stream_relay", None)


def test_the_agent_uses_the_first_relay_that_answers_and_leaves_it_after_three_misses(agent):
    selector = agent.Selector(["r1", "r2"], failures_for_down=3, failback_seconds=10)
    assert selector.choose(0) is None, "nothing probed yet: nothing chosen"
    for name in ("r1", "r2"):
        selector.observe(name, True, 0)
    selector.active = selector.choose(0)
    assert selector.active == "r1"
    for t in (1, 2):
        selector.observe("r1", False, t)
        assert selector.choose(t) == "r1", "two misses are a hiccup"
    selector.observe("r1", False, 3)
    selector.active = selector.choose(3)
    assert selector.active == "r2"


def test_the_agent_returns_only_after_failback_seconds_of_answers(agent):
    selector = agent.Selector(["r1", "r2"], failures_for_down=3, failback_seconds=10)
    selector.observe("r2", True, 0)
    selector.active = selector.choose(0)
    assert selector.active == "r2", "r1 never answered: the second, at once"
    selector.observe("r1", True, 100)
    assert selector.choose(105) == "r2", "back for 5 s: not yet"
    selector.observe("r1", False, 106)  # one miss does not reset its time up
    assert selector.choose(110) == "r1"


def test_the_agent_keeps_its_relay_when_none_answers(agent):
    selector = agent.Selector(["r1", "r2"], failures_for_down=1, failback_seconds=10)
    selector.observe("r1", True, 0)
    selector.active = selector.choose(0)
    selector.observe("r1", False, 1)
    selector.observe("r2", False, 1)
    assert selector.choose(1) == "r1", "the Pi's own network is gone: nothing to switch to"


def test_a_lan_site_with_relays_in_its_inventory_is_refused_with_the_fix(tmp_path):
    from pi_stream.errors import SiteError

    hosts = {"pi1": {"ansible_host": "192.0.2.10"}, "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": "203.0.113.10"}}}}
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "a", "source": {"type": "testsrc"}}]}, hosts)
    with pytest.raises(SiteError) as error:
        load_site(directory)
    assert "set topology: relay" in str(error.value)


def test_a_relay_routes_its_admins_to_the_pis_pages_and_dvr_through_the_tunnel(make_site):
    """relay.admins: the Pi's own site on 8443 and its DVR on the DVR's ports, each behind the relay's login."""
    directory = make_site("relay")
    files = rendered(directory)
    routes = files["relay1"]["etc/pi-stream/dvr-proxy.conf"]
    servers = re.findall(r"^    listen (\d+) ssl", routes, re.M)
    assert servers == ["8443", "9443", "7682"], servers
    assert "proxy_pass https://10.77.0.10:443;" in routes and "proxy_pass https://10.77.0.10:9443;" in routes
    assert "proxy_pass https://10.77.0.10:7682;" in routes, "the DVR's WebSocket port, to the Pi's TLS one"
    assert routes.count("auth_request /_pi_stream/auth/check;") == 3, "every route behind the relay's login"
    # The relay's cookies have names of their own, and none of them reaches the Pi.
    assert "pi_stream_relay_(?:session|media|device|dvr)=[^;]*" in routes
    assert routes.count("proxy_set_header Cookie $pi_stream_upstream_cookie;") == routes.count("auth_request /_pi_stream/auth/check;")
    access = json.loads(files["relay1"]["etc/pi-stream/auth/access.json"])
    assert access["dvrs"] == {"pi1": ["alice"], "barn": ["alice"]} and access["cookie_prefix"] == "pi_stream_relay"
    assert "[pi-stream-dvr]" in files["relay1"]["etc/fail2ban/jail.d/pi-stream.local"]
    # The relays count an admin's wrong passwords at the Pi's pages themselves: the Pi never bans a relay's tunnel address.
    tunnel_addresses = [relay.tunnel_address for relay in load_site(directory).remote.relays]
    assert f"ignoreip = 127.0.0.1/8 ::1 {' '.join(tunnel_addresses)}\n" in files["pi1"]["etc/fail2ban/jail.d/pi-stream.local"]
    assert "ignoreip" not in files["relay1"]["etc/fail2ban/jail.d/pi-stream.local"]
    assert 'set $pi_stream_auth_event "dvr-login-failed dvr=pi1";' in routes, "the relay logs a wrong password at the Pi's login"
    assert "dvr-proxy.conf" in files["relay1"]["etc/nginx/nginx.conf"]
    without = rendered(make_site("relay", relay={"relays": [{"host": "relay1"}, {"host": "relay2"}]}))
    assert without["relay1"]["etc/pi-stream/dvr-proxy.conf"].endswith("# No DVR is proxied by this host.\n"), "no admins: no route"


def test_a_relays_login_sets_cookies_of_its_own(make_site, short_root):
    """Names the Pi's pages (reached through the relay, on the relay's host name) never overwrite."""
    import socket

    from tests.configs.tree import RootedAppliance
    from tests.conftest import VIEWER, VIEWER_PASSWORD

    site_dir = install_tree(make_site, "relay", short_root, host="relay1")
    install_auth_secrets(site_dir, short_root)
    (short_root / "run").mkdir(exist_ok=True)
    service = RootedAppliance(short_root, site_dir)
    service.start_service()
    try:
        body = json.dumps({"user": VIEWER, "password": VIEWER_PASSWORD}).encode()
        request = (b"POST /auth/login HTTP/1.1\r\nHost: relay1\r\nX-Forwarded-Proto: https\r\nContent-Type: application/json\r\n"
                   b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(30)
            connection.connect(str(service.socket))
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    finally:
        service.stop_service()
    head = answer.decode(errors="replace").split("\r\n\r\n", 1)[0]
    assert head.startswith("HTTP/1.1 200") or head.startswith("HTTP/1.0 200"), head[:200]
    names = set(re.findall(r"^Set-Cookie: ([a-z_]+)=", head, re.M))
    assert names == {"pi_stream_relay_session", "pi_stream_relay_device", "pi_stream_relay_media"}
