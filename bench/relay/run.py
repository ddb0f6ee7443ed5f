"""Remote viewing through relays on the lab: the Pi's upload, failover and failback times, the relay path's added latency.

The lab ("relaybench"): pi1 is the Pi, pi2 and pi3 the relays of a site with
`topology: relay`, deployed by `pi-stream deploy`'s own code. Two viewer
namespaces: "remote", which the lab bridge keeps from the Pi (it reaches the
relays only), and "lan", which reaches the Pi directly: the port-forward
baseline, where every remote viewer pulls their own copy from the Pi.

  upload    the Pi's interface bytes per minute with 1, 10 and 50 players
            (tests/lab/relay_client.py pull: the playlist and every new segment,
            as hls.js does) through relay 1, and the same players pulling from
            the Pi itself, in the same run
  failover  relay 1 goes dark (lab.network_gone): seconds until the Pi's agent
            uses relay 2, and until a Chromium player that was watching plays
            through relay 2; then relay 1 back: the same, to relay 1
  latency   bench/latency's clock (milliseconds as blocks in every frame),
            published on the Pi into its nginx-rtmp in place of the camera;
            Chromium decodes it on the Pi's own page (LAN) and on relay 1's
            page (remote), in turn, same clock: the difference is what the
            relay path adds

Usage (root, after scripts/install.sh):
  .venv/bin/python bench/relay/run.py [--window 30] [--repeat 3] [--latency-seconds 45] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.latency.run import publisher_argv  # noqa: E402
from bench.report import publish  # noqa: E402
from pi_stream import credentials, lab  # noqa: E402
from pi_stream.console import Console  # noqa: E402
from pi_stream.errors import ExitStatus  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from pi_stream.workflows import run_deploy  # noqa: E402
from tests.conftest import wait_until, write_site  # noqa: E402
from tests.lab.conftest import remote_browser, run_in  # noqa: E402
from tests.lab.relays import PI, agent_state, on, playing_through, tx_bytes, url_of  # noqa: E402

LAB = "relaybench"
RELAY1, RELAY2 = "pi2", "pi3"
CAMERA = "porch"
USER, PASSWORD = "bench", "bench-password"
VIEWER_COUNTS = (1, 10, 50)
FAILBACK_SECONDS = 5


def deploy_site(workdir: Path, lab_state) -> Path:
    site = {
        "name": "cabin",
        "topology": "relay",
        "relay": {"relays": [{"host": RELAY1}, {"host": RELAY2}], "failback_seconds": FAILBACK_SECONDS},
        "cameras": [{"name": CAMERA, "source": {"type": "testsrc"}}],  # 640x360, 15 fps, 800 kbit/s: the defaults
    }
    directory = write_site(workdir / "cabin", site, viewers=False)
    for stale in (directory / ".pi-stream" / "wireguard").glob("*.pub"):
        stale.unlink()  # the hosts make their own keys
    credentials.add_user(directory, USER, PASSWORD)
    lab_state.write_inventory(directory / "inventory.yml", relays=(RELAY1, RELAY2))
    result = run_deploy(load_site(directory), Console(show_progress=True))
    if result.status != ExitStatus.OK:
        raise SystemExit(f"deploy failed: {result.failures}")
    return directory


def upload_per_minute(lab_state, client, url: str, viewers: int, window: float) -> dict:
    """The Pi's bytes per minute over `window` seconds while `viewers` players pull from `url` (already running)."""
    pullers = subprocess.Popen(
        [*client.exec_prefix, sys.executable, "-m", "tests.lab.relay_client", "pull", url + "/", USER, PASSWORD, CAMERA,
         str(viewers), str(window + 10)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )
    time.sleep(5)
    before = tx_bytes(lab_state, PI)
    time.sleep(window)
    sent = tx_bytes(lab_state, PI) - before
    pulled = json.loads(pullers.communicate(timeout=120)[0])
    return {"viewers": viewers, "pi_bytes_per_minute": round(sent * 60 / window), "segments_fetched": pulled["segments"]}


def failover_and_back(lab_state, browser) -> dict:
    with lab.network_gone(lab_state, RELAY1):
        started = time.monotonic()
        wait_until(lambda: agent_state(lab_state)["active"] == RELAY2, "the Pi on relay 2", seconds=60, interval=0.2)
        agent = time.monotonic() - started
        player = playing_through(browser, url_of(lab_state, RELAY2), 90) + agent
    started = time.monotonic()
    wait_until(lambda: agent_state(lab_state)["active"] == RELAY1, "the Pi back on relay 1", seconds=90, interval=0.2)
    agent_back = time.monotonic() - started
    player_back = playing_through(browser, url_of(lab_state, RELAY1), 90) + agent_back
    return {"failover_agent_s": round(agent, 1), "failover_player_s": round(player, 1),
            "failback_agent_s": round(agent_back, 1), "failback_player_s": round(player_back, 1)}


@contextlib.contextmanager
def clock_on_the_pi(lab_state, site):
    """bench/latency's clock published into the Pi's nginx-rtmp as the camera, the capture supervisor stopped meanwhile."""
    on(lab_state, PI, "systemctl stop pi-stream-capture.service")
    start_ms = int(time.time() * 1000) % 2**24
    argv = publisher_argv(site, "default", CAMERA, start_ms, clock=True)
    command = shlex.join(argv)
    on(lab_state, PI, f"systemd-run --unit=pi-stream-bench-clock --collect {command}")
    try:
        time.sleep(8)
        yield
    finally:
        subprocess.run(lab.ssh_argv(lab_state, PI, "systemctl stop pi-stream-bench-clock.service"), capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
        on(lab_state, PI, "systemctl start pi-stream-capture.service")


def clock_latency(client, url: str, seconds: float) -> dict:
    out = run_in(client, sys.executable, "-m", "bench.relay.clock_viewer", url + "/", USER, PASSWORD, str(seconds),
                 timeout=seconds + 180)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30, help="seconds per upload measurement")
    parser.add_argument("--repeat", type=int, default=3, help="failover/failback rounds, and latency rounds per path")
    parser.add_argument("--latency-seconds", type=float, default=45)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    figures: dict = {"lab": "pi1 (Pi), pi2 and pi3 (relays), bookworm amd64 containers; WireGuard is wireguard-go here"}
    state = lab.up(LAB, hosts=3, progress=print)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            started = time.monotonic()
            site_dir = deploy_site(Path(workdir), state)
            figures["deploy_s"] = round(time.monotonic() - started)
            site = load_site(site_dir)
            with contextlib.ExitStack() as stack:
                remote = stack.enter_context(lab.client_namespace(state, "benchremote"))
                lan = stack.enter_context(lab.client_namespace(state, "benchlan"))
                stack.enter_context(lab.unreachable(state, "internet", [(lab.host_port(state, PI), lab.client_port(state, remote))]))
                relay_runs = [upload_per_minute(state, remote, url_of(state, RELAY1), n, args.window) for n in VIEWER_COUNTS]
                direct_runs = [upload_per_minute(state, lan, url_of(state, PI), n, args.window) for n in VIEWER_COUNTS]
                figures["upload"] = {"through_relay": relay_runs, "port_forward_baseline": direct_runs}
                print(json.dumps(figures["upload"]), flush=True)

                with remote_browser(remote, url_of(state, RELAY1) + "/", USER, PASSWORD, CAMERA, "hls") as browser:
                    if browser.line(120)["event"] != "playing":
                        raise SystemExit("the remote browser never played")
                    rounds = [failover_and_back(state, browser) for _ in range(args.repeat)]
                figures["failover"] = {
                    "failback_seconds": FAILBACK_SECONDS, "rounds": rounds,
                    "median": {k: statistics.median(r[k] for r in rounds) for k in rounds[0]},
                }
                print(json.dumps(figures["failover"]), flush=True)

                with clock_on_the_pi(state, site):
                    lan_ms, relay_ms = [], []
                    for _ in range(args.repeat):
                        lan_ms.append(clock_latency(lan, url_of(state, PI), args.latency_seconds)["median_ms"])
                        relay_ms.append(clock_latency(remote, url_of(state, RELAY1), args.latency_seconds)["median_ms"])
                figures["latency_ms"] = {
                    "lan_medians": lan_ms, "relay_medians": relay_ms,
                    "lan": statistics.median(lan_ms), "relay": statistics.median(relay_ms),
                    "added_by_relay": statistics.median(relay_ms) - statistics.median(lan_ms),
                }
    finally:
        if not args.keep:
            lab.down(LAB)
    publish(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
