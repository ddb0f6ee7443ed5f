"""Glass-to-glass latency of the default site, over HTTP/2 and HTTP/1.1, against a hand-made baseline, in one run.

What it measures: a publisher encodes the wall clock (milliseconds, as 24
black/white blocks) into every frame; nginx with the rendered rtmp/http
config cuts HLS and serves it over HTTPS, behind the login service; headless
Chromium logs in on the rendered player page and plays; the page decodes the
clock from the displayed frame and subtracts it from its own clock.
Everything runs on this machine over loopback, so the figure is the
pipeline's latency (encode, HLS cut, playlist/segment fetch, player buffer)
without a network in between.

Configurations, same run, same clock, same browser:
  default   the site as `pi-stream init` writes it: HTTPS with HTTP/2, 1 s
            fragments, GOP = fragment, 4 s playlist, player.js's hls.js config
  http1     the same with web.http2: false (ALPN http/1.1)
  baseline  a typical hand-made setup: 3 s fragments, 60 s playlist, the
            encoder's default GOP (libx264: 250 frames), hls.js defaults
With --grid N, default and http1 run again with N cameras on the page (the
measured one first, N-1 more at 320x180): where HTTP/1.1's six connections
per host are shared by a grid, and HTTP/2's one connection is not.

A run's median depends on the moment the player joined (where in a fragment
its sync point fell), so --repeat N runs default and http1 N times each,
alternating, and the summary gives the median of their medians.

Usage (root, after scripts/install.sh):
  .venv/bin/python bench/latency/run.py [--seconds 60] [--grid 8] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream import credentials  # noqa: E402  (after the sys.path line above)
from pi_stream.render import render_site  # noqa: E402
from pi_stream.scaffold import init_site  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from tests.browser import headless_chromium  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.configs.tree import (  # noqa: E402
    APPLIANCE_DIRS,
    RootedAppliance,
    install_auth_secrets,
    install_bundle,
    make_certificate,
    rooted_paths,
    running,
)

from bench.report import publish  # noqa: E402

HTTPS_PORT, HTTP_PORT = 18480, 18481
USER, PASSWORD = "bench", "bench-password"
BITS, BLOCK = 24, 26  # 24 bits of milliseconds (4.6 h wrap), 26 px per block
FPS, WIDTH, HEIGHT = 15, 640, 360
GRID_WIDTH, GRID_HEIGHT = 320, 180

DECODE_JS = """
const v = document.querySelector('video');
if (!v || v.readyState < 2 || !v.videoWidth) return null;
const c = window.__clockCanvas || (window.__clockCanvas = document.createElement('canvas'));
c.width = v.videoWidth; c.height = v.videoHeight;
const g = c.getContext('2d', {willReadFrequently: true});
g.drawImage(v, 0, 0);
const row = g.getImageData(0, 20, %(bits)d * %(block)d, 1).data;
let value = 0;
for (let bit = 0; bit < %(bits)d; bit++) {
  const x = bit * %(block)d + Math.floor(%(block)d / 2);
  if (row[x * 4] > 128) value += Math.pow(2, bit);
}
const now = Date.now() %% Math.pow(2, %(bits)d);
return [(now - value + Math.pow(2, %(bits)d)) %% Math.pow(2, %(bits)d), window.__stalls || 0, v.currentTime];
""" % {"bits": BITS, "block": BLOCK}  # noqa: UP031 (JS braces would need doubling in an f-string)

STALL_JS = """
window.__stalls = 0;
document.querySelector('video').addEventListener('waiting', () => { window.__stalls += 1; });
"""
# The protocol the playlists came over, from the browser's own resource timing.
PROTOCOL_JS = """
const seen = performance.getEntriesByType('resource').filter(e => e.name.includes('.m3u8')).map(e => e.nextHopProtocol);
return seen.length ? seen[seen.length - 1] : null;
"""

CONFIGS = {
    # name: (site.yml changes, hls.js config override or None for the page's own)
    "default": ({}, None),
    "http1": ({"web": {"http2": False}}, None),
    "baseline": ({"hls": {"fragment_seconds": 3, "playlist_seconds": 60}}, "{}"),
}


def site_for(config: str, cameras: int, workdir: Path):
    import yaml

    directory = workdir / "site"
    init_site(directory, address="127.0.0.1")
    data = yaml.safe_load((directory / "site.yml").read_text())
    changes, _ = CONFIGS[config]
    data["web"] = {**data["web"], "https_port": HTTPS_PORT, "http_port": HTTP_PORT, **changes.get("web", {})}
    data["hls"] = {**data["hls"], **changes.get("hls", {})}
    data["cameras"] = [{"name": f"cam{n}", "source": {"type": "testsrc"}} for n in range(1, cameras + 1)]
    (directory / "site.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    credentials.add_user(directory, USER, PASSWORD)
    return load_site(directory)


def install(site, root: Path, config: str) -> None:
    """The rendered tree under `root`, as the roles install it, made to run here with RTMP kept (we publish)."""
    install_bundle(root, render_site(site, rooted_paths(root))["pi1"])
    for sub in (*APPLIANCE_DIRS, "run/pi-stream/hls"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    install_auth_secrets(site.directory, root)
    make_certificate(root)
    conf = root / "etc/nginx/nginx.conf"
    conf.write_text(conf.read_text().replace("user www-data;", "user root;"))  # the temporary tree is root's
    http_conf = root / "etc/nginx/pi-stream/http.conf"
    # Bench only: keep the test servers on loopback.
    text = http_conf.read_text()
    for port in (HTTPS_PORT, HTTP_PORT):
        text = text.replace(f"listen {port} ", f"listen 127.0.0.1:{port} ")
    http_conf.write_text(text)
    override = CONFIGS[config][1] if CONFIGS[config][1] is not None else os.environ.get("PI_STREAM_BENCH_HLS_CONFIG")
    if override is not None:
        # Baseline: hls.js defaults. PI_STREAM_BENCH_HLS_CONFIG tries other player settings on the default site.
        player = root / "var/www/pi-stream/static/player.js"
        text = player.read_text()
        start = text.index("var HLS_CONFIG = {")  # the config object literal
        end = text.index("};", start) + 2
        player.write_text(text[:start] + f"var HLS_CONFIG = {override};" + text[end:])


def publisher_argv(site, config: str, camera: str, start_ms: int, clock: bool) -> list[str]:
    fragment = site.hls.fragment_seconds
    if clock:
        bar = (
            f"color=c=black:size={WIDTH}x40:rate={FPS},format=gray,"
            f"geq=lum='if(lt(X,{BITS * BLOCK}),16+219*mod(floor((T*1000+{start_ms})/pow(2,floor(X/{BLOCK}))),2),16)'"
        )
        graph = f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}[bg];{bar}[bar];[bg][bar]overlay=0:0,format=yuv420p"
    else:
        graph = f"testsrc2=size={GRID_WIDTH}x{GRID_HEIGHT}:rate={FPS},format=yuv420p"
    gop = [] if config == "baseline" else ["-g", str(FPS * fragment), "-keyint_min", str(FPS * fragment),
                                            "-sc_threshold", "0", "-force_key_frames", f"expr:gte(t,n_forced*{fragment})"]
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", graph,
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-b:v", "800k" if clock else "300k", "-maxrate", "800k", "-bufsize", "1600k", *gop,
            "-bsf:v", "dump_extra=freq=keyframe", "-an", "-f", "flv", f"rtmp://127.0.0.1:1935/live/{camera}"]


def log_in(driver) -> None:
    """The page's own login form, as a viewer uses it: one bcrypt check, then a cookie per camera."""
    driver.get(f"https://127.0.0.1:{HTTPS_PORT}/")
    wait_until(lambda: driver.find_element("id", "login").is_displayed(), "the login form")
    driver.find_element("name", "user").send_keys(USER)
    driver.find_element("name", "password").send_keys(PASSWORD)
    driver.find_element("css selector", "#login button").click()
    wait_until(lambda: driver.find_elements("css selector", "#camera-cam1 video"), "the camera grid", seconds=30)


def measure(config: str, cameras: int, seconds: float, warmup: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ps-latency-"))
    publishers: list[subprocess.Popen] = []
    driver = None
    try:
        site = site_for(config, cameras, workdir)
        root = workdir / "root"
        install(site, root, config)
        subprocess.run(["nginx", "-t", "-q", "-c", str(root / "etc/nginx/nginx.conf")], check=True, timeout=30)
        with running(RootedAppliance(root, site.directory), HTTPS_PORT), stopped_at_exit(publishers):
            start_ms = int(time.time() * 1000) % (2**BITS)
            for index, camera in enumerate(site.cameras):
                publishers.append(subprocess.Popen(publisher_argv(site, config, camera.name, start_ms, clock=index == 0)))
            # Wait for a playlist before the player opens it, as a viewer arriving later would.
            playlist = root / "run/pi-stream/hls/cam1/index.m3u8"
            wait_until(playlist.exists, "the first playlist", seconds=60, interval=0.2)
            driver = headless_chromium("--ignore-certificate-errors")
            log_in(driver)
            wait_until(lambda: driver.execute_script(DECODE_JS) is not None, "a decodable frame", seconds=60, interval=0.25)
            driver.execute_script(STALL_JS)
            samples, stalls, stall_at_warmup = [], 0, 0
            begin = time.monotonic()
            while time.monotonic() - begin < warmup + seconds:
                value = driver.execute_script(DECODE_JS)
                if value and time.monotonic() - begin >= warmup:
                    latency_ms, stalls, _ = value
                    if latency_ms < 120_000:  # a frame from before decoding settled would wrap
                        samples.append(latency_ms / 1000)
                elif value:
                    stall_at_warmup = value[1]
                time.sleep(0.25)
            protocol = driver.execute_script(PROTOCOL_JS)
        if not samples:
            raise RuntimeError(f"{config}: the page never showed a decodable frame")
        samples.sort()
        return {
            "config": config,
            "cameras": cameras,
            "protocol": protocol,
            "fragment_seconds": site.hls.fragment_seconds,
            "playlist_seconds": site.hls.playlist_seconds,
            "samples": len(samples),
            "median_s": round(statistics.median(samples), 2),
            "p90_s": round(samples[int(0.9 * (len(samples) - 1))], 2),
            "max_s": round(samples[-1], 2),
            "stalls_after_warmup": max(0, stalls - stall_at_warmup),
            "measured_seconds": seconds,
        }
    finally:
        if driver:
            driver.quit()
        subprocess.run(["rm", "-rf", str(workdir)], check=False, timeout=60)


@contextlib.contextmanager
def stopped_at_exit(processes: list[subprocess.Popen]):
    """The publishers end before nginx does (inside its context), so none reports a broken connection."""
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=15, help="seconds before measuring (player settles)")
    parser.add_argument("--grid", type=int, default=0, help="also run default and http1 with this many cameras on the page")
    parser.add_argument("--repeat", type=int, default=1, help="run default and http1 this many times each, alternating: "
                        "a median depends on the moment the player joined, so one run per configuration is not enough to compare")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.environ.get("PI_STREAM_BENCH_HLS_CONFIG"):
        runs = [("default", 1)]
    else:
        grids = [1, args.grid] if args.grid > 1 else [1]
        runs = [(config, cameras) for _ in range(args.repeat) for cameras in grids for config in ("default", "http1")]
        runs.insert(2, ("baseline", 1))
    results = [measure(config, cameras, args.seconds, args.warmup) for config, cameras in runs]
    medians: dict[tuple[str, int], list[float]] = {}
    for r in results:
        medians.setdefault((r["config"], r["cameras"]), []).append(r["median_s"])
    summary = {f"{config}, {cameras} camera(s)": {"runs": len(values), "median_of_medians_s": round(statistics.median(values), 2),
                                                 "lowest_s": min(values), "highest_s": max(values)}
               for (config, cameras), values in medians.items()}
    ratios = {}
    if ("baseline", 1) in medians:
        ratios["baseline_over_default"] = round(statistics.median(medians[("baseline", 1)]) / statistics.median(medians[("default", 1)]), 2)
    for cameras in sorted({c for _, c in medians}):
        if ("http1", cameras) in medians:
            ratios[f"http1_over_http2_{cameras}_cameras"] = round(
                statistics.median(medians[("http1", cameras)]) / statistics.median(medians[("default", cameras)]), 2)
    publish({"results": results, "summary": summary, "ratios": ratios}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
