"""Shared fixtures: example sites built in tmp_path, never touching the user's files."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest
import yaml

from pi_stream import credentials

VIEWER = "alice"
VIEWER_PASSWORD = "correct horse battery"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite tests/unit/golden from the current templates (review the diff before committing).",
    )


# Lab modules, longest first, grouped by the lab they boot. pytest-xdist (`-n` in pyproject.toml)
# runs each group on one worker (pytest_xdist_make_scheduler below), handing groups out in this
# order: the long labs start at once and the short groups, then the fast modules, fill in behind
# them. The suite's time is its busiest worker's, so the order is what makes the workers pay.
# Modules that share a lab share a group (the farm: tests/lab/farm, test_appliance, test_identity
# and test_viewer_auth, in this order); every other module is a group of its own, so a module-scoped server or
# lab is set up once, on one worker.
LAB_GROUPS = {
    "test_webrtc": "rtctest",
    "test_relay": "relaytest",
    "test_source_build": "srctest",
    "test_appliance": "farm",
    "test_identity": "farm",
    "test_viewer_auth": "farm",
    "test_nvr": "nvrtest",
    "test_dvr_proxy": "dvrtest",
    "test_trixie": "test-trixie",
    "test_lab": "labtest",
    # tests/lab/installed: one lab, these modules in this order (each leaves the Pi as the next expects).
    "test_quick_start": "installed",
    "test_checks_suite": "installed",
    "test_removal": "installed",
    "test_collection": "installed",
}
LAB_DIR = Path(__file__).resolve().parent / "lab"


def worker_group(nodeid: str) -> str:
    """The worker group of a test: its lab's name for lab modules, else its module."""
    module = nodeid.split("::", 1)[0]
    return LAB_GROUPS.get(Path(module).stem, module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lab modules get the `lab` marker and go first, longest first; the rest keep their order."""
    order = {group: rank for rank, group in enumerate(dict.fromkeys(LAB_GROUPS.values()))}
    for item in items:
        if LAB_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.lab)
    modules = {module: rank for rank, module in enumerate(LAB_GROUPS)}
    items.sort(
        key=lambda item: (
            order.get(worker_group(item.nodeid), len(order)),
            modules.get(Path(item.nodeid.split("::", 1)[0]).stem, len(modules)),
        )
    )  # stable


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject.toml): two workers when labs run (each keeps a core busy with cameras, builds and
    Ansible), four for the fast tests alone (`-m "not lab"`), which wait on loopback servers, ffmpeg and a
    browser more than they compute: 85 s with two workers, 55 s with four, on two cores."""
    return 4 if "not lab" in (config.getoption("markexpr") or "") else 2


def pytest_xdist_make_scheduler(config, log):
    """Groups by worker_group(), in collection order (xdist's own loadgroup marks are lost on pytest 9:
    it rewrites node ids that pytest 9 no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return GroupScheduling(config, log)


def wait_until(condition, what: str, seconds: float = 30.0, interval: float = 0.1) -> None:
    """Poll `condition` until it is truthy; fail naming `what` after `seconds` (every wait in the tests is bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")


INVENTORY_GROUPS = ("pi_stream_builders", "pi_stream_relays")


def write_site(directory: Path, site: dict, hosts: dict | None = None, viewers: bool = True, files: dict | None = None) -> Path:
    """A site directory; `hosts` may hold the groups pi_stream_builders and pi_stream_relays ({"hosts": {...}}).
    `files`: more files of the site by name; a name with "secret" in it is made 0600. The files site.yml `login:`
    names (an OIDC client secret, a CA) are made unless given."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in {**login_files(site), **(files or {})}.items():
        (directory / name).write_text(content, encoding="utf-8")
        (directory / name).chmod(0o600 if "secret" in name else 0o644)
    (directory / "site.yml").write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    hosts = hosts if hosts is not None else {"pi1": {"ansible_host": "192.0.2.10", "ansible_user": "root"}}
    inventory: dict = {"all": {"hosts": {n: v for n, v in hosts.items() if n not in INVENTORY_GROUPS}}}
    groups = {n: v for n, v in hosts.items() if n in INVENTORY_GROUPS}
    if groups:
        inventory["all"]["children"] = groups
    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    if viewers:
        credentials.add_user(directory, VIEWER, VIEWER_PASSWORD)
    if site.get("topology") == "relay":
        names = [*inventory["all"]["hosts"], *groups.get("pi_stream_relays", {}).get("hosts", {})]
        write_public_keys(directory, names)
    return directory


# A real CA certificate (its key thrown away): the site model checks that login.ca_file loads as one. Tests that
# need a CA that signs something make their own (tests/identity_provider.py).
PLACEHOLDER_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBkDCCATWgAwIBAgIUNZ8yJP17dmeR5YA7E6czPG0cz3EwCgYIKoZIzj0EAwIw\n"
    "HDEaMBgGA1UEAwwRcGktc3RyZWFtIHRlc3QgQ0EwIBcNMjYxMjA4MDUyODUzWhgP\n"
    "MjEyNjExMTQwNTI4NTNaMBwxGjAYBgNVBAMMEXBpLXN0cmVhbSB0ZXN0IENBMFkw\n"
    "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuM9xPC/zjFcvYKCCuJgQdfnhaXHFxRE0\n"
    "BEvpU33tO/ZSk6/im3Lz6NLy2iI9kHpKOYkriP/ikkAGCBfnnkZ0/6NTMFEwHQYD\n"
    "VR0OBBYEFEXgRz7itNjqg8NafCLdzcyYBqDtMB8GA1UdIwQYMBaAFEXgRz7itNjq\n"
    "g8NafCLdzcyYBqDtMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh\n"
    "AKNAGIIxC6Uf6sWC3jpheWcVpLGiZ4LmApKbnOjizhy9AiEApOwZhaUS7BCI9xvI\n"
    "3idtjDTZP0xg/mdsFMusd5dLQ+g=\n"
    "-----END CERTIFICATE-----\n"
)


def login_files(site: dict) -> dict[str, str]:
    """The files a site.yml `login:` names, with stand-in contents."""
    login = site.get("login") if isinstance(site.get("login"), dict) else {}
    oidc = login.get("oidc") if isinstance(login.get("oidc"), dict) else {}
    files = {}
    if isinstance(oidc.get("client_secret_file"), str):
        files[oidc["client_secret_file"]] = "s3cret-from-the-provider\n"
    if isinstance(login.get("ca_file"), str):
        files[login["ca_file"]] = PLACEHOLDER_CA
    return files


def write_public_keys(directory: Path, names: list[str]) -> None:
    """What the playbook records of each tunnel host: a WireGuard public key (here made from the name, stable)."""
    keys = directory / ".pi-stream" / "wireguard"
    keys.mkdir(parents=True, exist_ok=True)
    for name in names:
        key = base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()
        (keys / f"{name}.pub").write_text(key + "\n", encoding="ascii")


EXAMPLE_SITES: dict[str, tuple[dict, dict]] = {
    "testsrc-https": (
        {"name": "home", "cameras": [{"name": "testcam", "source": {"type": "testsrc"}}]},
        {"pi1": {"ansible_host": "192.0.2.10"}},
    ),
    "mixed-http": (
        {
            "name": "shop",
            "web": {"https": False, "http_port": 8080, "cors_origins": ["https://dash.example.org"]},
            "hls": {"fragment_seconds": 2, "playlist_seconds": 8},
            "cameras": [
                {
                    "name": "door",
                    "title": "Front <door> & yard",
                    "source": {
                        "type": "rtsp",
                        "url": "rtsp://192.0.2.20:554/Streaming/Channels/101",
                        "username": "admin",
                        "password": "p@ss:w/rd%#!",
                    },
                },
                {"name": "desk", "source": {"type": "v4l2", "device": "/dev/video0", "input_format": "mjpeg"}, "fps": 10},
                {"name": "picam", "source": {"type": "libcamera"}},
            ],
        },
        {"pi1": {"ansible_host": "192.0.2.10"}},
    ),
    "two-pis": (
        {
            "name": "farm",
            "cameras": [
                {"name": "barn", "host": "pi1", "source": {"type": "testsrc"}},
                {"name": "gate", "host": "pi2", "source": {"type": "testsrc"}, "width": 320, "height": 180},
            ],
        },
        {"pi1": {"ansible_host": "192.0.2.10"}, "pi2": {"ansible_host": "192.0.2.11", "ansible_port": 2222}},
    ),
    "nvr": (
        {
            "name": "warehouse",
            "nvrs": {
                "shed": {
                    "host": "192.0.2.64",
                    "username": "admin",
                    "password": "s3cret:/@nvr",
                    "path_template": "/ip{channel}/0",
                    "max_sessions": 3,
                }
            },
            "storage": {"recordings_path": "/mnt/usb/pi-stream"},
            "status": {"metrics_allow": ["192.0.2.0/24"]},
            "cameras": [
                {
                    "name": "dock",
                    "priority": 90,
                    "source": {"type": "rtsp", "nvr": "shed", "channel": 1},
                    "snapshots": {"interval_seconds": 4, "keep_days": 14},
                    "recording": {"enabled": True, "keep_days": 3},
                },
                {"name": "yard", "source": {"type": "rtsp", "nvr": "shed", "channel": 2}},
                {"name": "gate", "priority": 10, "source": {"type": "rtsp", "nvr": "shed", "channel": 3}},
                {"name": "lobby", "on_demand": True, "source": {"type": "rtsp", "nvr": "shed", "channel": 4}},
                {"name": "attic", "transcode": True, "source": {"type": "rtsp", "nvr": "shed", "channel": 5}, "snapshots": {"keep_days": 0}},
            ],
        },
        {"pi1": {"ansible_host": "192.0.2.10"}},
    ),
    "dvr": (
        {
            "name": "depot",
            "web": {"server_name": "cam.example.org"},
            "cameras": [{"name": "gate", "source": {"type": "testsrc"}}],
            "dvr_proxy": {
                # Hikvision's ports by name on the appliance's 443, the appliance's login in front.
                "shed": {"host": "192.168.100.64", "server_name": "dvr.example.org", "viewer_auth": True},
                # Another DVR on a port of its own, its WebSocket ports given, no cache.
                "office": {
                    "host": "fd00::64", "preset": "generic", "https_port": 8443, "http_port": 8080,
                    "websocket_ports": [{"tls": 9443, "plain": 9080}], "login_paths": ["/api/login"], "cache_mb": 0,
                },
            },
        },
        {"pi1": {"ansible_host": "192.0.2.10"}},
    ),
    "webrtc": (
        {
            "name": "gatehouse",
            "cameras": [
                # OME takes the camera from nginx, never from the NVR: its credentials stay out of Server.xml.
                {"name": "gate", "source": {"type": "rtsp", "url": "rtsp://192.0.2.30:554/stream1", "username": "admin",
                                            "password": "p&ss<w>rd!\"'"}},
                {"name": "drive", "source": {"type": "testsrc"}},
                {"name": "yard", "source": {"type": "testsrc"}},
            ],
            # Port-forwarded: remote browsers dial the router's name; yard stays HLS only.
            "topology": "port_forward",
            "webrtc": {"cameras": ["gate", "drive"], "public_address": "cam.example.org"},
        },
        {"pi1": {"ansible_host": "192.0.2.10"}},
    ),
    "identity": (
        {
            "name": "family",
            "topology": "relay",
            # Reached from anywhere through the relay, behind Cloudflare Access, and with a "Sign in with" button;
            # carol passes the relay to the Pi's pages and its DVR by identity alone.
            "relay": {"relays": [{"host": "relay1", "url": "https://cams.example.org"}], "admins": ["carol"]},
            "dvr_proxy": {"barn": {"host": "192.168.1.64", "https_port": 9443, "viewer_auth": True}},
            "cameras": [{"name": "porch", "source": {"type": "testsrc"}}, {"name": "garden", "source": {"type": "testsrc"}}],
            "viewers": {"alice": {"emails": ["Alice@Example.org"], "cameras": ["garden"]}, "carol": {"emails": ["carol@example.org"]}},
            "login": {
                "oidc": {"issuer": "https://id.example.org/realms/home", "client_id": "pi-stream",
                         "client_secret_file": "oidc-client-secret", "name": "Home ID"},
                "proxy": {"type": "cloudflare_access", "team_domain": "family.cloudflareaccess.com", "audience": "4714c1358e65fe4b"},
                "ca_file": "identity-ca.pem",
            },
        },
        {
            "pi1": {"ansible_host": "192.168.1.10"},
            "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": "203.0.113.10"}}},
        },
    ),
    "relay": (
        {
            "name": "cabin",
            "topology": "relay",
            "relay": {"relays": [{"host": "relay1", "url": "https://cams.example.org"}, {"host": "relay2"}], "admins": [VIEWER]},
            # Reached through the relays too: a DVR on a port of its own (Hikvision: its WebSocket on 7682).
            "dvr_proxy": {"barn": {"host": "192.168.1.64", "https_port": 9443, "viewer_auth": True}},
            "cameras": [
                {"name": "porch", "source": {"type": "testsrc"}},
                {"name": "shed", "source": {"type": "rtsp", "url": "rtsp://192.168.1.20/stream1"}, "on_demand": True},
            ],
        },
        {
            "pi1": {"ansible_host": "192.168.1.10"},
            "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": "203.0.113.10"}, "relay2": {"ansible_host": "198.51.100.20"}}},
        },
    ),
}

@pytest.fixture
def make_site(tmp_path: Path):
    def make(name: str = "testsrc-https", **overrides) -> Path:
        site, hosts = EXAMPLE_SITES[name]
        return write_site(tmp_path / name, {**site, **overrides}, hosts)

    return make


@pytest.fixture(autouse=True)
def _no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    os.umask(0o022)
