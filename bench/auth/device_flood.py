"""Can a household still log in while a wrong-password flood comes from many addresses?

The login service checks one password at a time. A flood from more addresses
than the per-address limit and fail2ban can stop fills that queue. A browser
that logged in before holds a device cookie and goes first; this measures both
kinds of login in the middle of such a flood, on the lab, fail2ban stopped
(the worst case: addresses it has not banned yet).

Usage (root; brings lab "bench-auth" up and down, about 4 minutes):
  .venv/bin/python bench/auth/device_flood.py [--addresses 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/auth/run.py: lab, site, flood helpers)

from bench.report import publish  # noqa: E402
from pi_stream import lab  # noqa: E402

LOGINS = 6
INTERVAL = 6.0  # seconds between login pairs; the flood runs 50 s


def curl_login(client: lab.Client, base: str, jar: Path) -> dict:
    """One browser login with curl and a cookie jar; the password goes in on stdin."""
    body = json.dumps({"user": bench.VIEWER, "password": bench.PASSWORD})
    started = time.monotonic()
    out = subprocess.run(
        [*client.exec_prefix, "curl", "-sk", "--max-time", "30", "-c", str(jar), "-b", str(jar), "-o", "/dev/null",
         "-w", "%{http_code}", "-H", "Content-Type: application/json", "--data-binary", "@-", f"{base}/auth/login"],
        input=body, capture_output=True, text=True, timeout=60, check=False,
    )
    return {"status": out.stdout.strip(), "seconds": round(time.monotonic() - started, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addresses", type=int, default=48, help="flooding addresses, one connection each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lab_obj = lab.up(bench.LAB, hosts=1, progress=bench.progress)
    try:
        work = Path(tempfile.mkdtemp(prefix="bench-auth-device."))
        host = bench.Host(lab_obj, "pi1")
        bench.deploy(bench.make_site(work / "site", lab_obj))
        bench.wait_for_stream(host)
        base = f"https://{host.address}"
        logins = []
        with contextlib.ExitStack() as stack, bench.fail2ban_stopped(host):
            known = stack.enter_context(lab.client_namespace(lab_obj, "bench-auth-known"))
            fresh = stack.enter_context(lab.client_namespace(lab_obj, "bench-auth-fresh"))
            first = curl_login(known, base, work / "known.jar")
            flooders = [stack.enter_context(lab.client_namespace(lab_obj, f"bench-auth-flood{i}")) for i in range(args.addresses)]
            flood_args, headers = bench.flood_argv_for("token", base)
            floods = [bench.wrk(c, base + "/", 1, 1, 50, flood_args, headers) for c in flooders]
            started = time.monotonic()
            for number in range(LOGINS):
                time.sleep(max(0.0, started + INTERVAL * (number + 1) - time.monotonic()))
                pair = {"at_s": round(time.monotonic() - started, 1),
                        "known_device": curl_login(known, base, work / "known.jar"),
                        "new_device": curl_login(fresh, base, work / f"fresh{number}.jar")}
                bench.progress(f"login pair {number + 1}/{LOGINS}: {pair}")
                logins.append(pair)
            statuses: dict[str, int] = {}
            for process in floods:
                for status, count in bench.wrk_result(process, timeout=120)["statuses"].items():
                    statuses[status] = statuses.get(status, 0) + count
        publish({"addresses": args.addresses, "first_login_before_flood": first, "logins_during_flood": logins,
                 "flood_statuses": statuses}, args.json)
    finally:
        lab.down(bench.LAB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
