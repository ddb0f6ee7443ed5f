"""Time the README's first command, cold (nothing cached) and warm.

cold  no lab, no debootstrapped root, no apt proxy cache, no demo site:
      everything a first run on a fresh machine does after scripts/install.sh
warm  the lab taken down but caches kept (the usual second day)
again the demo run a second time with its lab still up

Destructive for the demo lab and pi-stream's caches (/var/cache/pi-stream);
root only. Usage: .venv/bin/python bench/demo/run.py [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.report import publish  # noqa: E402  (after the sys.path line above)

PI_STREAM = [str(REPO / ".venv/bin/pi-stream")]
CACHE = Path(os.environ.get("PI_STREAM_CACHE_DIR", "/var/cache/pi-stream"))
SITE = REPO / "demo-site"


def timed_demo(label: str) -> float:
    start = time.monotonic()
    result = subprocess.run([*PI_STREAM, "-q", "demo"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"{label}: demo failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    print(f"{label}: {elapsed:.1f} s", flush=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    subprocess.run([*PI_STREAM, "lab", "down", "--name", "demo"], check=True, timeout=300)
    shutil.rmtree(CACHE, ignore_errors=True)
    shutil.rmtree(SITE, ignore_errors=True)
    cold = timed_demo("cold")
    subprocess.run([*PI_STREAM, "lab", "down", "--name", "demo"], check=True, timeout=300)
    warm = timed_demo("warm")
    again = timed_demo("again (lab up)")
    publish(
        {
            "cold_s": round(cold, 1),
            "warm_s": round(warm, 1),
            "again_s": round(again, 1),
            "targets": {"cold_s": 600, "warm_s": 120},
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
