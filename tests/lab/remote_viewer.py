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

A "failed" or "report" line with no tile carries `page`: the login form's state
and message, and the page's console errors since the last line, so a test that
fails says why the tile never came. A login the page answers "busy" (the Pi's one
bcrypt slot, under load) is tried again, as a person would, up to LOGIN_TRIES times.
A browser error is reported as {"event": "error", ...}, not a silent exit.

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
LOGIN_TRIES = 3
LOGIN_WAIT_SECONDS = 30
# The page's own words for an answer worth trying again (player.js); a wrong password is not.
RETRY_MESSAGES = ("busy", "does not answer", "Too many attempts")

PAGE_JS = """
const form = document.getElementById('login');
const message = document.getElementById('login-message');
return {login_shown: !form.hidden, login_message: message ? message.textContent : '',
        tiles: document.querySelectorAll('figure.camera').length,
        grid: (document.getElementById('grid') || {}).textContent.slice(0, 200)};
"""

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


def page(driver) -> dict:
    """The login's state and the console's errors: why a tile is missing."""
    errors = [entry["message"][:300] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    return {**driver.execute_script(PAGE_JS), "console": errors[-10:]}


def tile(driver, camera: str) -> dict:
    return driver.execute_script(TILE_JS, camera) or {"page": page(driver)}


def moving(driver, camera: str) -> dict:
    """The tile, with `advanced`: how far its video's time went in two seconds."""
    before = tile(driver, camera)
    time.sleep(2)
    after = tile(driver, camera)
    return {**after, "advanced": round(after.get("time", 0) - before.get("time", 0), 2)}


def log_in(driver, url: str, user: str, password: str) -> int:
    """Log in with the page's form; the number of tries it took. Raises with the page's answer if none got in."""
    driver.set_page_load_timeout(30)
    driver.get(url)
    form = driver.find_element("id", "login")
    until(lambda: form.is_displayed(), "the login form never showed", driver)
    for attempt in range(1, LOGIN_TRIES + 1):
        driver.find_element("name", "user").clear()
        driver.find_element("name", "user").send_keys(user)
        driver.find_element("name", "password").send_keys(password)
        driver.find_element("css selector", "#login button").click()
        # The button is disabled while the answer is awaited; then either the form hides or it says why not.
        until(lambda: not form.is_displayed() or driver.find_element("css selector", "#login button").is_enabled(),
              "the login never answered", driver)
        if not form.is_displayed():
            return attempt
        message = driver.find_element("id", "login-message").text
        if not any(words in message for words in RETRY_MESSAGES):
            break
        time.sleep(2 * attempt)
    raise RuntimeError(f"the login failed: {json.dumps(page(driver))}")


def until(condition, what: str, driver) -> None:
    deadline = time.monotonic() + LOGIN_WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} in {LOGIN_WAIT_SECONDS} s: {json.dumps(page(driver))}")
        time.sleep(0.2)


def main(url: str, user: str, password: str, camera: str, transport: str = "webrtc") -> int:
    started = time.monotonic()
    driver = headless_chromium("--ignore-certificate-errors", console_log=True)
    try:
        try:
            logins = log_in(driver, url, user, password)
        except Exception as error:  # noqa: BLE001 - the test reads why, then the browser quits
            emit("failed", advanced=0, error=str(error))
            logins = 0
        seen = {}
        deadline = time.monotonic() + PLAY_SECONDS
        while logins and time.monotonic() < deadline:
            seen = moving(driver, camera)
            if seen.get("transport") == transport and seen["advanced"] > 0.5 and seen["spread"] > 30:
                emit("playing", logins=logins, **seen)
                break
        else:
            if logins:
                emit("failed", logins=logins, **seen)
        while time.monotonic() - started < LIFETIME_SECONDS:
            ready, _, _ = select.select([sys.stdin], [], [], 5)
            if not ready:
                continue
            line = sys.stdin.readline().strip()
            if line in ("", "quit"):
                break
            if line == "report":
                try:
                    emit("report", **moving(driver, camera))
                except Exception as error:  # noqa: BLE001 - a crashed tab or a hung page: said, not a silent exit
                    emit("error", advanced=0, error=f"{type(error).__name__}: {error}"[:2000])
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
