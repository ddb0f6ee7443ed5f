"""Headless Chromium for the tests and the benches: Debian's chromium and chromedriver, with the flags this machine needs.

As root, Chromium needs --no-sandbox; without the background-networking flags it keeps
trying to reach Google's hosts, which this machine's closed network refuses.
"""

from __future__ import annotations

import shutil

BASE_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
)


# A JS function for execute_script: the spread of brightness over a 64x36 copy of a <video>'s current frame
# (0 for one flat colour, such as a black or error frame; a test pattern gives well over 50).
FRAME_SPREAD_JS = """
function frameSpread(v) {
  const c = document.createElement('canvas');
  c.width = 64; c.height = 36;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 64, 36);
  const d = g.getImageData(0, 0, 64, 36).data;
  let min = 255, max = 0;
  for (let i = 0; i < d.length; i += 4) { const y = (d[i] + d[i+1] + d[i+2]) / 3; min = Math.min(min, y); max = Math.max(max, y); }
  return max - min;
}
"""


def headless_chromium(*flags: str, window: str = "1280,900", console_log: bool = False):
    """A started webdriver; `flags` are added to BASE_FLAGS. console_log keeps the page's console for `get_log`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        raise RuntimeError("chromium or chromium-driver is not installed: run scripts/install.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*BASE_FLAGS, f"--window-size={window}", *flags):
        options.add_argument(flag)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)
