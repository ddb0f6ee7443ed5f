"""Glass-to-glass latency of the default site, against a hand-made baseline, in one run.

What it measures: a publisher encodes the wall clock (milliseconds, as 24
black/white blocks) into every frame; nginx with the rendered rtmp/http
config cuts HLS; headless Chromium plays the rendered player page; the page
decodes the clock from the displayed frame and subtracts it from its own
clock. Everything runs on this machine over loopback, so the figure is the
pipeline's latency (encode, HLS cut, playlist/segment fetch, player buffer)
without a network in between.

Two configurations, same run:
  default   the site as `pi-stream init` writes it: 1 s fragments, GOP = fragment,
            4 s playlist, player.js's hls.js config
  baseline  a typical hand-made setup: 3 s fragments, 60 s playlist, the
            encoder's default GOP (libx264: 250 frames), hls.js defaults

Usage (root, after scripts/install.sh):
  .venv/bin/python bench/latency/run.py [--seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
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
from pi_stream.render import DEFAULT_PATHS, render_site  # noqa: E402
from pi_stream.scaffold import init_site  # noqa: E402
from pi_stream.site import load_site  # noqa: E402

from bench.report import publish  # noqa: E402

PORT = 18480
USER, PASSWORD = "bench", "bench-password"
BITS, BLOCK = 24, 26  # 24 bits of milliseconds (4.6 h wrap), 26 px per block
FPS, WIDTH, HEIGHT = 15, 640, 360

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


def site_for(config: str, workdir: Path):
    directory = workdir / f"site-{config}"
    init_site(directory, address="127.0.0.1")
    text = (directory / "site.yml").read_text()
    text = text.replace("https: true", "https: false").replace("http_port: 80 ", f"http_port: {PORT} ")
    if config == "baseline":
        text = text.replace("fragment_seconds: 1", "fragment_seconds: 3").replace("playlist_seconds: 4", "playlist_seconds: 60")
    (directory / "site.yml").write_text(text)
    credentials.add_user(directory, USER, PASSWORD)
    return load_site(directory)


def install(site, root: Path, config: str) -> None:
    keep = {"nginx_modules_include", "nginx_mime_types", "ffmpeg", "rpicam_vid", "nft", "font"}
    paths = {k: v if k in keep or not v else f"{root}{v}" for k, v in DEFAULT_PATHS.items()}
    paths["nginx_temp_dir"] = str(root / "var/lib/nginx")
    for target, file in render_site(site, paths)["pi1"].items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    http_conf = root / "etc/nginx/pi-stream/http.conf"
    # Bench only: keep the test server on loopback.
    http_conf.write_text(http_conf.read_text().replace(f"listen {PORT} ", f"listen 127.0.0.1:{PORT} "))
    override = {"baseline": "{}"}.get(config, os.environ.get("PI_STREAM_BENCH_HLS_CONFIG"))
    if override is not None:
        # Baseline: hls.js defaults. PI_STREAM_BENCH_HLS_CONFIG tries other player settings on the default site.
        player = root / "var/www/pi-stream/static/player.js"
        text = player.read_text()
        start = text.index("var HLS_CONFIG = {")  # the config object literal
        end = text.index("};", start) + 2
        player.write_text(text[:start] + f"var HLS_CONFIG = {override};" + text[end:])
    for sub in ("var/log/nginx", "var/lib/nginx", "run/pi-stream/hls"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    htpasswd = root / "etc/nginx/pi-stream/viewers.htpasswd"
    shutil.copy(site.viewers_file, htpasswd)
    shutil.chown(htpasswd, "root", "www-data")  # as the role installs it: workers read, others not
    htpasswd.chmod(0o640)
    subprocess.run(["chown", "-R", "www-data:www-data", str(root / "run/pi-stream/hls"), str(root / "var/lib/nginx")], check=True, timeout=30)
    for parent in [root, *root.parents]:
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)


def publisher_argv(site, config: str, start_ms: int) -> list[str]:
    fragment = site.hls.fragment_seconds
    clock = (
        f"color=c=black:size={WIDTH}x40:rate={FPS},format=gray,"
        f"geq=lum='if(lt(X,{BITS * BLOCK}),16+219*mod(floor((T*1000+{start_ms})/pow(2,floor(X/{BLOCK}))),2),16)'"
    )
    graph = f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}[bg];{clock}[bar];[bg][bar]overlay=0:0,format=yuv420p"
    gop = [] if config == "baseline" else ["-g", str(FPS * fragment), "-keyint_min", str(FPS * fragment),
                                            "-sc_threshold", "0", "-force_key_frames", f"expr:gte(t,n_forced*{fragment})"]
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", graph,
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-b:v", "800k", "-maxrate", "800k", "-bufsize", "1600k", *gop,
            "-bsf:v", "dump_extra=freq=keyframe", "-an", "-f", "flv", "rtmp://127.0.0.1:1935/live/testcam"]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1000,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    return driver


def measure(config: str, seconds: float, warmup: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"pi-stream-latency-{config}-"))
    nginx = publisher = driver = None
    try:
        site = site_for(config, workdir)
        root = workdir / "root"
        install(site, root, config)
        conf = str(root / "etc/nginx/nginx.conf")
        subprocess.run(["nginx", "-t", "-q", "-c", conf], check=True, timeout=30)
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
        time.sleep(0.5)
        start_ms = int(time.time() * 1000) % (2**BITS)
        publisher = subprocess.Popen(publisher_argv(site, config, start_ms))
        # Wait for a playlist before the player opens it, as a viewer arriving later would.
        playlist = root / "run/pi-stream/hls/testcam/index.m3u8"
        deadline = time.monotonic() + 60
        while not playlist.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        driver = browser()
        driver.get(f"http://127.0.0.1:{PORT}/")
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
        if not samples:
            raise RuntimeError(f"{config}: the page never showed a decodable frame")
        samples.sort()
        return {
            "config": config,
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
        for process in (publisher, nginx):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=15, help="seconds before measuring (player settles)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    configs = ("default",) if os.environ.get("PI_STREAM_BENCH_HLS_CONFIG") else ("default", "baseline")
    results = [measure(config, args.seconds, args.warmup) for config in configs]
    publish(
        {
            "results": results,
            "ratio_baseline_over_default": round(results[-1]["median_s"] / results[0]["median_s"], 2),
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
