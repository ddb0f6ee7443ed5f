"""A remote viewer for the lab tests (WebRTC, relays): headless Chromium on the player page, inside a network namespace.

Run as `ip netns exec NS python -m tests.lab.remote_viewer URL USER PASSWORD CAMERA [TRANSPORT]`
(chromedriver and Chromium talk over the namespace's own loopback, so both run
in it, with the viewer's address and firewall). It logs in with the page's
form, then writes one JSON line per request read from stdin:

  (start)   {"event": "playing", ...} once the camera's tile shows a moving
            picture over TRANSPORT (webrtc, the default, or hls), or
            {"event": "failed", ...} after PLAY_SECONDS
  "report"  {"event": "report", ...}: the tile now, and whether its video time
            advanced over the last two seconds
  "quit" or end of input: Chromium stops and the script exits

It also exits by itself after LIFETIME_SECONDS, so a test that dies never
leaves a browser behind.
"""

from __future__ import annotations

import json
import select
import sys
import time

from tests.browser import FRAME_SPREAD_JS, headless_chromium

PLAY_SECONDS = 90  # OME publishes a video-only stream after 250 frames: 10 s at 25 fps, plus the login and ICE
LIFETIME_SECONDS = 900

TILE_JS = FRAME_SPREAD_JS + """
const tile = document.getElementById('camera-' + arguments[0]);
if (!tile) return null;
const transport = tile.getAttribute('data-transport');
// OvenPlayer puts its own <video> in place of the .webrtc box; the tile's own <video> is hls.js's.
const hls = tile.querySelector(':scope > video');
const webrtc = [...tile.querySelectorAll('video')].find(v => v !== hls);
const video = transport === 'webrtc' && webrtc ? webrtc : hls;
const label = tile.querySelector('.transport');
const spread = video && video.videoWidth ? frameSpread(video) : 0;
const status = tile.querySelector('.status');
return {transport: transport, why: label ? label.title : '', status: status ? status.textContent : '',
        relay: tile.getAttribute('data-relay') || '',
        time: video ? video.currentTime : 0,
        width: video ? video.videoWidth : 0, height: video ? video.videoHeight : 0, spread: spread};
"""


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def tile(driver, camera: str) -> dict:
    return driver.execute_script(TILE_JS, camera) or {}


def moving(driver, camera: str) -> dict:
    """The tile, with `advanced`: how far its video's time went in two seconds."""
    before = tile(driver, camera)
    time.sleep(2)
    after = tile(driver, camera)
    return {**after, "advanced": round(after.get("time", 0) - before.get("time", 0), 2)}


def log_in(driver, url: str, user: str, password: str) -> None:
    driver.set_page_load_timeout(30)
    driver.get(url)
    deadline = time.monotonic() + 30
    while not driver.find_element("id", "login").is_displayed():
        if time.monotonic() > deadline:
            raise TimeoutError("the login form never showed")
        time.sleep(0.2)
    driver.find_element("name", "user").send_keys(user)
    driver.find_element("name", "password").send_keys(password)
    driver.find_element("css selector", "#login button").click()


def main(url: str, user: str, password: str, camera: str, transport: str = "webrtc") -> int:
    started = time.monotonic()
    driver = headless_chromium("--ignore-certificate-errors")
    try:
        log_in(driver, url, user, password)
        seen = {}
        deadline = time.monotonic() + PLAY_SECONDS
        while time.monotonic() < deadline:
            seen = moving(driver, camera)
            if seen.get("transport") == transport and seen["advanced"] > 0.5 and seen["spread"] > 30:
                emit("playing", **seen)
                break
        else:
            emit("failed", **seen)
        while time.monotonic() - started < LIFETIME_SECONDS:
            ready, _, _ = select.select([sys.stdin], [], [], 5)
            if not ready:
                continue
            line = sys.stdin.readline().strip()
            if line in ("", "quit"):
                break
            if line == "report":
                emit("report", **moving(driver, camera))
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
