"""Glass-to-glass latency of WebRTC (OvenMediaEngine) against HLS, in one run, with the same clock and the same browser.

What it measures: bench/latency's clock (the wall clock in milliseconds,
drawn as 24 blocks into every frame) published to the rendered nginx-rtmp;
nginx cuts HLS and pushes the camera to OME (the rendered Server.xml, OME
started from --ome); headless Chromium logs in on the rendered player page,
which plays the camera over WebRTC through OME's TCP relay (the site's
webrtc section), or over HLS when the camera is left out of it. The page
decodes the clock from the displayed frame. Everything runs over loopback.

Also: stalls (the video's `waiting` events, and seconds in which the decoded
clock did not move) after the warm-up, and OME's CPU per camera (its
process's CPU seconds over the measured window, divided by cameras).

Usage (root, after scripts/install.sh and an OME build, e.g. the pi-stream-ome .deb):
  .venv/bin/python bench/webrtc/run.py --ome /usr/bin/OvenMediaEngine [--seconds 60] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.latency.run import DECODE_JS, STALL_JS, USER, PASSWORD, install, log_in, publisher_argv, stopped_at_exit  # noqa: E402
from bench.latency.run import HTTPS_PORT, HTTP_PORT  # noqa: E402
from bench.report import publish  # noqa: E402
from pi_stream import credentials  # noqa: E402
from pi_stream.render import OME_API_TOKEN_ENV, OME_APP  # noqa: E402
from pi_stream.scaffold import init_site  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from pi_stream.site.webrtc import OME_API_PORT, OME_SIGNALLING_PORT  # noqa: E402
from tests.browser import headless_chromium  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.configs.tree import RootedAppliance, port_open, running  # noqa: E402

API_TOKEN = "bench-token"
TRANSPORT_JS = """
const tile = document.querySelector('[data-transport]');
if (!tile) return null;
const label = tile.querySelector('.transport');
return [tile.getAttribute('data-transport'), label ? label.title : ''];
"""


def site_for(transport: str, workdir: Path):
    directory = workdir / "site"
    init_site(directory, address="127.0.0.1")
    data = yaml.safe_load((directory / "site.yml").read_text())
    data["web"] = {**data["web"], "https_port": HTTPS_PORT, "http_port": HTTP_PORT}
    data["cameras"] = [{"name": "cam1", "source": {"type": "testsrc"}}, {"name": "spare", "source": {"type": "testsrc"}}]
    # The WebRTC run offers cam1 over it; the HLS run offers only a camera nobody watches, so OME runs in both.
    data["webrtc"] = {"cameras": ["cam1" if transport == "webrtc" else "spare"]}
    (directory / "site.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    credentials.add_user(directory, USER, PASSWORD)
    return load_site(directory)


def ome_stream_names() -> list[str]:
    import base64
    import json
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{OME_API_PORT}/v1/vhosts/default/apps/{OME_APP}/streams",
                                     headers={"Authorization": "Basic " + base64.b64encode(API_TOKEN.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)["response"]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(transport: str, ome: Path, seconds: float, warmup: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ps-webrtc-"))
    publishers: list[subprocess.Popen] = []
    engine = driver = None
    try:
        site = site_for(transport, workdir)
        root = workdir / "root"
        install(site, root, "default")
        (root / "var/log/ovenmediaengine").mkdir(parents=True, exist_ok=True)
        subprocess.run(["nginx", "-t", "-q", "-c", str(root / "etc/nginx/nginx.conf")], check=True, timeout=30)
        with running(RootedAppliance(root, site.directory), HTTPS_PORT), stopped_at_exit(publishers):
            log = (workdir / "ome.log").open("wb")
            engine = subprocess.Popen([str(ome), "-c", str(root / "etc/ovenmediaengine")], stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env={**os.environ, OME_API_TOKEN_ENV: API_TOKEN})
            publishers.append(engine)
            wait_until(lambda: port_open(OME_SIGNALLING_PORT), "OME's signalling port", seconds=30, interval=0.2)
            start_ms = int(time.time() * 1000) % (2**24)
            for index, camera in enumerate(site.cameras):
                publishers.append(subprocess.Popen(publisher_argv(site, "default", camera.name, start_ms, clock=index == 0),
                                                   stdin=subprocess.DEVNULL))
            wait_until((root / "run/pi-stream/hls/cam1/index.m3u8").exists, "the first playlist", seconds=60, interval=0.2)
            # OME publishes a video-only RTMP stream after 250 frames (it waits that long for audio): 17 s at 15 fps.
            wait_until(lambda: "cam1" in ome_stream_names() or "spare" in ome_stream_names(), "OME's first stream", seconds=90, interval=0.5)
            driver = headless_chromium("--ignore-certificate-errors")
            log_in(driver)
            wait_until(lambda: driver.execute_script(DECODE_JS) is not None, "a decodable frame", seconds=60, interval=0.25)
            driver.execute_script(STALL_JS)
            samples, frozen_seconds, last_clock, stalls, stall_at_warmup = [], 0, None, 0, 0
            begin = time.monotonic()
            cpu_at_start = None
            while time.monotonic() - begin < warmup + seconds:
                value = driver.execute_script(DECODE_JS)
                measuring = time.monotonic() - begin >= warmup
                if measuring and cpu_at_start is None:
                    cpu_at_start = (cpu_seconds(engine.pid), time.monotonic())
                if value and measuring:
                    latency_ms, stalls, current_time = value
                    if latency_ms < 120_000:
                        samples.append(latency_ms / 1000)
                    if last_clock is not None and current_time == last_clock:
                        frozen_seconds += 0.25
                    last_clock = current_time
                elif value:
                    stall_at_warmup = value[1]
                time.sleep(0.25)
            cpu_used = cpu_seconds(engine.pid) - cpu_at_start[0]
            wall = time.monotonic() - cpu_at_start[1]
            shown, why = driver.execute_script(TRANSPORT_JS)
        if not samples:
            raise RuntimeError(f"{transport}: the page never showed a decodable frame")
        if shown != transport:
            keep = workdir.with_name(workdir.name + "-failed")
            workdir.rename(keep)
            raise RuntimeError(f"asked for {transport}, the page showed {shown}: {why} (OME's log: {keep}/ome.log)")
        samples.sort()
        engine_log = (workdir / "ome.log").read_text(errors="replace")
        return {
            "transport": shown,
            # OvenPlayer sets iceTransportPolicy "relay" when OME's offer carries TURN servers (TcpForce): media over TCP 3478.
            "turn_tcp_clients": engine_log.count("Turn client has connected"),
            "samples": len(samples),
            "median_s": round(statistics.median(samples), 3),
            "p90_s": round(samples[int(0.9 * (len(samples) - 1))], 3),
            "max_s": round(samples[-1], 3),
            "stalls_after_warmup": max(0, stalls - stall_at_warmup),
            "frozen_seconds": frozen_seconds,
            # One camera through OME in the WebRTC run (and one pushed but unwatched in both).
            "ome_cpu_percent_per_camera": round(100 * cpu_used / wall, 1),
            "measured_seconds": seconds,
        }
    finally:
        if driver:
            driver.quit()
        if engine and engine.poll() is None:
            engine.terminate()
        subprocess.run(["rm", "-rf", str(workdir)], check=False, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ome", type=Path, default=Path("/usr/bin/OvenMediaEngine"), help="the OvenMediaEngine binary")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each transport, alternating")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not os.access(args.ome, os.X_OK):
        parser.error(f"{args.ome} is not an executable OvenMediaEngine: build one (roles/webrtc_ome/files/source-build/build-ome-deb.sh)")
    results = [measure(transport, args.ome, args.seconds, args.warmup) for _ in range(args.repeat) for transport in ("webrtc", "hls")]
    medians = {t: statistics.median(r["median_s"] for r in results if r["transport"] == t) for t in ("webrtc", "hls")}
    summary = {
        "webrtc_median_of_medians_s": round(medians["webrtc"], 3),
        "hls_median_of_medians_s": round(medians["hls"], 3),
        "webrtc_over_hls": round(medians["webrtc"] / medians["hls"], 3),
        "webrtc_target_met": medians["webrtc"] <= 0.5 and all(r["stalls_after_warmup"] == 0 for r in results if r["transport"] == "webrtc"),
    }
    publish({"results": results, "summary": summary}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
