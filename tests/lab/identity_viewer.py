"""A viewer who signs in by identity, for tests/lab/farm/test_identity.py: headless Chromium inside a network namespace.

Run as `ip netns exec NS python -m tests.lab.identity_viewer URL SUB CAMERA`. It opens the player page at URL,
clicks "Sign in with ..." (#signin-oidc), types SUB into the identity provider's form (oidc-provider-mock: an
input named "sub" and an "Authorize" button), follows the provider back to the Pi's callback (a page that moves
on to "/" by itself) and waits for the camera grid. Then it prints one JSON line and exits:

  {"event": "playing", "url", "titles": [...], "user", "advanced", "width", "height", "spread", "button", "steps"}
      the grid shows, and CAMERA's video time went forward by `advanced` seconds over two seconds
  {"event": "failed", "step", "error", "url", "page"}
      a step did not happen within its bound: which one, where the browser was, and what the page said

Every wait is bounded (STEP_SECONDS, PLAY_SECONDS); the whole run ends within about two minutes. The lab's
certificates (the Pi's, the provider's test CA) are not checked by the browser, and the browser resolves no name:
the provider's page links a stylesheet on a CDN (cdn.jsdelivr.net), whose lookup would leave the lab and, with no
resolver answering, held the page's load for about 27 s. Only the lab's own addresses (the Pi's /24) are dialled.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse

from tests.browser import FRAME_SPREAD_JS, headless_chromium

STEP_SECONDS = 30
PLAY_SECONDS = 60

GRID_JS = """
return {titles: [...document.querySelectorAll('figure.camera .title')].map(e => e.textContent),
        user: (document.getElementById('account-user') || {}).textContent || '',
        login_shown: !(document.getElementById('login') || {hidden: true}).hidden,
        message: (document.getElementById('login-message') || {}).textContent || ''};
"""

VIDEO_JS = FRAME_SPREAD_JS + """
const v = document.querySelector('#camera-' + arguments[0] + ' video');
if (!v) return null;
return {time: v.currentTime, width: v.videoWidth, height: v.videoHeight, spread: v.videoWidth ? frameSpread(v) : 0};
"""


class StepFailed(Exception):
    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


STEPS: dict[str, float] = {}  # seconds each step took, in the output line: where the time goes
SEEN: dict[str, str] = {}  # what the pages said on the way (the sign-in button's label)


def until(condition, step: str, seconds: float = STEP_SECONDS):
    """condition()'s first truthy value within `seconds`, else StepFailed(step). Exceptions count as not yet."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - an element not there yet, a page mid-navigation
            value = None
        if value:
            STEPS[step] = round(time.monotonic() - deadline + seconds, 2)
            return value
        time.sleep(0.2)
    raise StepFailed(step)


def timed(step: str, action) -> None:
    """action(), its seconds kept in STEPS: a navigation (a page load, a click that submits) waits for the next page."""
    started = time.monotonic()
    action()
    STEPS[step] = round(time.monotonic() - started, 2)


def sign_in(driver, url: str, sub: str) -> None:
    driver.set_page_load_timeout(STEP_SECONDS)
    timed("the player page loaded", lambda: driver.get(url))
    button = until(lambda: (b := driver.find_element("id", "signin-oidc")).is_displayed() and b, "the sign-in button")
    SEEN["button"] = button.text
    timed("off to the provider", button.click)
    field = until(lambda: driver.find_element("css selector", "input[name='sub']"), "the provider's login form")
    field.send_keys(sub)
    # The form with the field; the page has other forms (Deny, previous users) with buttons of their own.
    authorize = driver.find_element("xpath", "//form[.//input[@name='sub']]//button[normalize-space()='Authorize']")
    timed("authorized at the provider", authorize.click)
    # The callback's page moves on to "/" by itself; then the page asks /auth/session and shows the grid.
    until(lambda: driver.current_url.rstrip("/") == url.rstrip("/") and driver.execute_script(GRID_JS)["titles"],
          "back on the player page with the camera grid")


def watch(driver, camera: str) -> dict:
    """The camera's video once its time moves: how far it went in two seconds, and the frame's size and spread."""
    until(lambda: (driver.execute_script(VIDEO_JS, camera) or {}).get("time", 0) > 0.5, f"{camera}'s video starting",
          PLAY_SECONDS)
    before = driver.execute_script(VIDEO_JS, camera)
    time.sleep(2)
    after = driver.execute_script(VIDEO_JS, camera)
    return {**after, "advanced": round(after["time"] - before["time"], 2)}


def main(url: str, sub: str, camera: str) -> int:
    started = time.monotonic()
    lab_network = urllib.parse.urlsplit(url).hostname.rsplit(".", 1)[0] + ".*"  # the Pis and the provider
    driver = headless_chromium("--ignore-certificate-errors", f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {lab_network}",
                               console_log=True)
    STEPS["browser started"] = round(time.monotonic() - started, 2)
    try:
        try:
            sign_in(driver, url, sub)
            grid = driver.execute_script(GRID_JS)
            emit("playing", url=driver.current_url, titles=grid["titles"], user=grid["user"], **watch(driver, camera), steps=STEPS, **SEEN)
        except StepFailed as failed:
            try:
                page = driver.execute_script("return document.body ? document.body.innerText.slice(0, 600) : ''")
                console = [entry["message"][:300] for entry in driver.get_log("browser")][-10:]
            except Exception as error:  # noqa: BLE001 - a crashed tab: say so, not a second traceback
                page, console = f"(unreadable: {type(error).__name__})", []
            emit("failed", step=failed.step, url=driver.current_url, page=page, console=console, steps=STEPS)
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
