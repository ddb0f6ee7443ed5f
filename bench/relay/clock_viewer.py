"""Glass-to-glass latency as one remote browser sees it, for bench/relay/run.py; runs inside a network namespace.

  ip netns exec NS python -m bench.relay.clock_viewer URL USER PASSWORD SECONDS

Logs in on the player page at URL (headless Chromium, the lab's self-signed
certificate accepted), waits for the first camera's picture, then decodes
bench/latency's clock from the displayed frame four times a second for
SECONDS (at most 300) and prints {"median_ms", "samples"} as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from bench.latency.run import DECODE_JS
from tests.browser import headless_chromium
from tests.lab.remote_viewer import log_in

MAX_SECONDS = 300


def main(url: str, user: str, password: str, seconds: str) -> int:
    driver = headless_chromium("--ignore-certificate-errors")
    try:
        log_in(driver, url, user, password)
        deadline = time.monotonic() + 60
        while driver.execute_script(DECODE_JS) is None:
            if time.monotonic() > deadline:
                print(json.dumps({"error": "no picture in 60 s"}))
                return 1
            time.sleep(0.5)
        time.sleep(5)  # past the player's start-up catch-up
        samples = []
        end = time.monotonic() + min(float(seconds), MAX_SECONDS)
        while time.monotonic() < end:
            decoded = driver.execute_script(DECODE_JS)
            if decoded is not None and decoded[0] < 60_000:
                samples.append(decoded[0])
            time.sleep(0.25)
        print(json.dumps({"median_ms": statistics.median(samples) if samples else None, "samples": len(samples)}))
        return 0
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
