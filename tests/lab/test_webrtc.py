"""WebRTC through OvenMediaEngine on a simulated Pi, end to end: built by the role, played by a remote browser over the TCP relay.

A lab of its own ("rtctest", one Pi) and a controller cache of its own. The
first deploy builds OME as a user's would: from ../shared/vendor's OME 0.19.0
tarball (the site's `file:` source) and Debian's spdlog source, with
`optimize: false` (the lab's build profile: -O0, about 2.4 times faster to
compile; the optimised build is bench/build's). That build is 20 minutes of
both cores, so the cache is kept with the labs' own (Debian roots, apt
proxy): like every pi-stream package, it is named after all of its inputs
(the tarballs, the build script and patch, optimize, the release and
architecture), and a change to any of them builds it anew. With the package
cached, the first deploy installs it from the controller as a second Pi
would; the test says which of the two it saw. PI_STREAM_TEST_CACHE puts the
cache elsewhere (an empty directory: a cold build).

The cameras come from the fake NVR (its own namespace on the lab bridge), so
its counters show what OME costs the NVR: nothing, OME takes nginx's push.
The viewer is headless Chromium in a namespace of its own, with every UDP
packet to the Pi dropped: only the TCP relay can carry the media. The tests
run in order, each from the state the previous one left.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from pi_stream import credentials, ome_source
from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.site.webrtc import DEFAULT_OME_SOURCE
from pi_stream.status import read_host_status
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site
from tests.lab.conftest import booted_lab, controller_cache, nvr_beside, remote_browser, run_in, ssh

LAB = "rtctest"
REPO = Path(__file__).resolve().parents[2]
OME_TARBALL = Path(os.environ.get("PI_STREAM_VENDOR", REPO.parent / "shared" / "vendor")) / "OvenMediaEngine-0.19.0.tar.gz"
NVR_USER, NVR_PASSWORD = "admin", "gate&door<ok>!"  # XML's and URLs' special characters, as a real NVR password may have
FPS = 25  # OME publishes a video-only stream after 250 frames: 10 s at this rate
BOB, BOB_PASSWORD = "bob", "bob sees the door only"
CAMERAS = {"gate": 1, "door": 2}  # camera: NVR channel


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The controller's cache for this module (see the module's docstring: kept between runs, keyed)."""
    from pi_stream.lab.state import CACHE_DIR

    directory = Path(os.environ.get("PI_STREAM_TEST_CACHE") or CACHE_DIR / "controller-rtctest")
    directory.mkdir(parents=True, exist_ok=True)
    with controller_cache(directory):
        yield directory


@pytest.fixture(scope="module")
def rtc_lab(cache):
    if not OME_TARBALL.is_file():
        pytest.fail(f"no OvenMediaEngine source at {OME_TARBALL}: see ../shared/vendor/README.md, or set PI_STREAM_VENDOR")
    with booted_lab(LAB, hosts=1) as state:
        yield state


@pytest.fixture(scope="module")
def nvr(rtc_lab, tmp_path_factory):
    with nvr_beside(rtc_lab, tmp_path_factory.mktemp("nvr"), len(CAMERAS), 4, NVR_USER, NVR_PASSWORD, fps=FPS) as server:
        yield server


@pytest.fixture(scope="module")
def site_dir(rtc_lab, nvr, tmp_path_factory) -> Path:
    site = {
        "name": "gatehouse",
        "nvrs": {"hall": {"host": nvr.address, "username": NVR_USER, "password": NVR_PASSWORD,
                          "path_template": "/ip{channel}/0", "max_sessions": 4}},
        "cameras": [{"name": name, "source": {"type": "rtsp", "nvr": "hall", "channel": channel}}
                    for name, channel in CAMERAS.items()],
        "viewers": {BOB: {"cameras": ["door"]}},
        "webrtc": {
            "source": {
                "ome": {"version": DEFAULT_OME_SOURCE.version, "file": str(OME_TARBALL), "sha256": DEFAULT_OME_SOURCE.sha256},
                "optimize": False,
            },
        },
    }  # fmt: skip
    directory = write_site(tmp_path_factory.mktemp("webrtc") / "gatehouse", site)
    credentials.add_user(directory, BOB, BOB_PASSWORD)
    rtc_lab.write_inventory(directory / "inventory.yml")
    return directory


@pytest.fixture(scope="module")
def cached_before(cache) -> list[str]:
    """The OME packages the controller's cache held before this module deployed."""
    return packages(cache)


@pytest.fixture(scope="module")
def first_deploy(site_dir, cached_before):
    started = time.monotonic()
    result = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert result.status == ExitStatus.OK, result.failures
    how = f"installed from the controller's cache ({', '.join(cached_before)})" if cached_before else "built (optimize: false)"
    print(f"first deploy, OME {how}: {time.monotonic() - started:.0f} s; the build task: {build_task_seconds(result.run_dir)}")
    return result


def build_task_seconds(run_dir: Path) -> str:
    """From the deploy's own events: how long the build task ran (docs/benchmarks.md quotes it)."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    starts = [e for e in events if e["event"] == "task_start"]
    for this, following in zip(starts, starts[1:], strict=False):
        if this["task"].startswith("Build OvenMediaEngine"):
            return f"{following['at'] - this['at']:.0f} s"
    return "not run"


def packages(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("packages/*/pi-stream-ome_*.deb"))


def on_pi(lab_state, command: str) -> str:
    result = ssh(lab_state, "pi1", command)
    assert result.returncode == 0, (command, result.stderr)
    return result.stdout.strip()


def verified(site_dir: Path):
    site = load_site(site_dir)
    return verify_site(site, render_site(site), VIEWER, VIEWER_PASSWORD)


def ome_sessions(site_dir: Path) -> dict:
    """{camera: WebRTC sessions} from OME's API on the Pi, as `pi-stream status` reads it."""
    return read_host_status(load_site(site_dir), "pi1").webrtc.get("streams", {})


def test_the_first_deploy_builds_ome_once_and_a_rerun_changes_nothing(first_deploy, rtc_lab, site_dir, cache, cached_before):
    key = ome_source.inputs_key(load_site(site_dir).webrtc.source)
    build_id = hashlib.sha256(f"{key}/bookworm/amd64".encode()).hexdigest()[:12]
    package = f"pi-stream-ome_0.19.0-0pistream+{build_id}_amd64.deb"
    assert package in packages(cache), "the package is named after this site's inputs"
    assert on_pi(rtc_lab, "dpkg-query --show --showformat='${db:Status-Status} ${Version}' pi-stream-ome") == \
        "installed " + package.split("_")[1]
    assert "not found" not in on_pi(rtc_lab, "ldd /usr/bin/OvenMediaEngine"), "every library the build linked is installed"
    assert ssh(rtc_lab, "pi1", "test -e /var/cache/pi-stream-build").returncode == 1, "the build directory is removed"
    # The API token is made on the Pi, readable by root only, and never in the bundle.
    assert on_pi(rtc_lab, "stat -c '%U %a' /etc/pi-stream/ome/api.env") == "root 600"
    token = on_pi(rtc_lab, "cut -d= -f2- /etc/pi-stream/ome/api.env")
    bundle = site_dir / ".pi-stream" / "bundle"
    assert len(token) >= 32 and not any(token in p.read_text(errors="replace") for p in bundle.rglob("*") if p.is_file())
    # What render wrote is, byte for byte, what OME reads.
    for name in ("Server.xml", "Logger.xml"):
        rendered = next(bundle.glob(f"*/etc/ovenmediaengine/{name}")).read_bytes()
        assert on_pi(rtc_lab, f"sha256sum /etc/ovenmediaengine/{name}").split()[0] == hashlib.sha256(rendered).hexdigest(), name

    again = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert again.status == ExitStatus.OK, again.failures
    assert again.changed == 0, f"a re-run changed {again.changed} things; see {again.run_dir}"
    assert packages(cache) == sorted({*cached_before, package}), "nothing was built again"


def test_verify_passes_with_ome_streams_and_an_offer_through_the_relay(first_deploy, rtc_lab, site_dir):
    result = verified(site_dir)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    names = [c.name for c in result.checks]
    assert "service pi-stream-ome active" in names and "OvenMediaEngine has every WebRTC camera" in names
    offers = [c for c in result.checks if "offer" in c.detail]
    relay = f"turn:{rtc_lab.hosts[0].address}:3478?transport=tcp"
    assert len(offers) == len(CAMERAS) and all(relay in c.detail for c in offers), [(c.name, c.detail) for c in offers]


@pytest.fixture(scope="module")
def viewer(first_deploy, rtc_lab, site_dir):
    """Chromium playing the gate camera from its own namespace, with UDP to the Pi dropped (and the drop proved)."""
    from pi_stream import lab

    pi = rtc_lab.hosts[0].address
    with lab.client_namespace(rtc_lab, "rtcviewer") as client:
        in_namespace = functools.partial(run_in, client, timeout=60)

        in_namespace("nft", "-f", "-", input=f"table inet viewer {{\n chain out {{\n  type filter hook output priority 0;\n"
                                              f"  ip daddr {pi} meta l4proto udp counter drop\n }}\n}}\n")
        # The control: UDP from this namespace to the Pi reaches the rule and goes no further (the sender sees EPERM).
        control = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nrefused = 0\nfor _ in range(3):\n"
                   f"    try:\n        s.sendto(b'x', ('{pi}', 10000))\n    except PermissionError:\n        refused += 1\nprint(refused)")
        assert in_namespace(sys.executable, "-c", control).stdout.strip() == "3"
        assert "packets 3 " in in_namespace("nft", "list", "table", "inet", "viewer").stdout

        with remote_browser(client, f"https://{pi}/", VIEWER, VIEWER_PASSWORD, "gate") as browser:
            yield browser


def udp_dropped(viewer) -> int:
    """Packets the viewer namespace's rule has dropped on their way to the Pi."""
    return int(re.search(r"packets (\d+)", viewer.in_namespace("nft", "list", "table", "inet", "viewer").stdout)[1])


def test_chromium_plays_webrtc_through_the_tcp_relay_with_udp_to_the_pi_dropped(viewer, rtc_lab, site_dir):
    playing = viewer.line(150)
    assert playing["event"] == "playing", json.dumps(playing)
    assert (playing["width"], playing["height"]) == (320, 180) and playing["spread"] > 30, playing
    assert viewer.line(30, "report")["advanced"] > 1, "the picture keeps moving"
    assert viewer.line(30, "report")["transport"] == "webrtc"
    assert udp_dropped(viewer) == 3, "Chromium sent no UDP to the Pi: the media came over the TCP relay"
    # OME's own counters see the viewer, from the viewer's address, on the relay port.
    wait_until(lambda: ome_sessions(site_dir).get("gate", 0) >= 1, "OME's session for the viewer", seconds=20, interval=1)
    relay = on_pi(rtc_lab, f"ss -Htn state established '( sport = :3478 )' dst {viewer.address}")
    assert relay, "the viewer's TURN connection to the relay port"


@pytest.fixture(scope="module")
def pinned(first_deploy, rtc_lab, tmp_path_factory) -> str:
    """The Pi's self-signed certificate, trusted as the only CA (as verify does)."""
    from pi_stream.render import DEFAULT_PATHS

    path = tmp_path_factory.mktemp("tls") / "pi1.pem"
    path.write_text(on_pi(rtc_lab, f"cat {DEFAULT_PATHS['tls_cert']}") + "\n", encoding="utf-8")
    return str(path)


def test_the_nvr_sees_one_session_per_camera_with_webrtc_and_hls_watched(viewer, rtc_lab, site_dir, nvr, pinned):
    from pi_stream.verify import Http

    pi = rtc_lab.hosts[0].address
    session = Http()  # verify's own client: timeouts, and `verify` that REQUESTS_CA_BUNDLE cannot override
    session.verify = pinned
    assert session.post(f"https://{pi}/auth/login", json={"user": VIEWER, "password": VIEWER_PASSWORD}).ok
    for name in CAMERAS:  # HLS watched beside WebRTC: the playlist and its newest segment, a few times over
        for _ in range(3):
            playlist = session.get(f"https://{pi}/hls/{name}/index.m3u8")
            assert playlist.status_code == 200, (name, playlist.status_code)
            segment = [line for line in playlist.text.splitlines() if line and not line.startswith("#")][-1]
            assert session.get(f"https://{pi}/hls/{name}/{segment}").status_code == 200
            time.sleep(1)
    assert viewer.line(30, "report")["transport"] == "webrtc", "WebRTC is still what the viewer watches"
    stats = nvr.stats()
    assert {n: stats.channels[n].open for n in CAMERAS.values()} == {1: 1, 2: 1}, stats.channels
    assert stats.total.open == len(CAMERAS) and stats.total.refused == 0


def test_signalling_refuses_no_token_and_another_viewers_camera(first_deploy, rtc_lab, site_dir, pinned):
    from pi_stream.verify import Http, media_cookie, ssl_context_of
    from pi_stream.webrtc_checks import refused_without_token, signalling_offer

    pi = rtc_lab.hosts[0].address
    session = Http()
    session.verify = pinned
    assert session.post(f"https://{pi}/auth/login", json={"user": BOB, "password": BOB_PASSWORD}).status_code == 200
    context = ssl_context_of(session)
    door = media_cookie(session, "/webrtc/door/")
    assert door and media_cookie(session, "/webrtc/gate/") == "", "bob gets a token for his camera only"
    failed_before = jail_failures(rtc_lab)
    assert refused_without_token(f"wss://{pi}/webrtc/gate/", context) == (True, "HTTP 401 from nginx")
    assert signalling_offer(f"wss://{pi}/webrtc/gate/", door, context, "-") == (False, "HTTP 403 from nginx")
    assert signalling_offer(f"wss://{pi}/webrtc/door/", door, context, f"{pi}:3478")[0], "his own camera answers"
    wait_until(lambda: jail_failures(rtc_lab) > failed_before, "fail2ban counting the forged token", seconds=30, interval=1)


def jail_failures(lab_state) -> int:
    status = on_pi(lab_state, "fail2ban-client status pi-stream-media")
    return int(re.search(r"Total failed:\s+(\d+)", status)[1])


def test_ome_killed_comes_back_by_itself_and_the_viewer_keeps_a_picture(viewer, rtc_lab, site_dir):
    before = on_pi(rtc_lab, "systemctl show -p MainPID --value pi-stream-ome")
    assert before.isdigit() and before != "0"
    on_pi(rtc_lab, f"kill -9 {before}")

    def restarted() -> bool:
        pid = on_pi(rtc_lab, "systemctl show -p MainPID --value pi-stream-ome")
        return pid not in ("0", before) and on_pi(rtc_lab, "systemctl is-active pi-stream-ome || true") == "active"

    wait_until(restarted, "systemd restarting OME", seconds=30, interval=1)
    # nginx's push reconnects to the new OME, which publishes each camera after 250 frames again.
    wait_until(lambda: set(ome_sessions(site_dir)) >= set(CAMERAS), "both cameras back in OME", seconds=90, interval=2)
    result = verified(site_dir)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    # The page never went blank: it fell back to HLS when WebRTC stalled (or reconnected), and keeps moving.
    report = viewer.line(30, "report")
    assert report["advanced"] > 1 and report["spread"] > 30, report
    print(f"after OME was killed the viewer plays {report['transport']} ({report['why']})")
