"""Lynis' hardening index of a freshly deployed lab Pi, before and after the appliance patches itself, in one run.

What it measures: Lynis (Debian's package) audits a simulated Pi (the lab) that
runs the appliance, twice:
  before  the appliance as an earlier release deployed it (`--before-checkout`, a
          checkout of that release with its own .venv), or this release with
          `updates.security: false` when none is given
  after   this release deployed over it with the default `updates:`, and its first
          unattended-upgrades run done (what the first night does)
Each audit's hardening index, its warnings (PKGS-7392: vulnerable packages) and
the number of its suggestions are printed, and written as JSON with --json.

Usage (root, after scripts/install.sh; about ten minutes):
  .venv/bin/python bench/security/run.py [--before-checkout DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream import lab  # noqa: E402  (after the sys.path line above)
from pi_stream.console import Console  # noqa: E402
from pi_stream.errors import ExitStatus  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from pi_stream.workflows import run_deploy  # noqa: E402
from tests.conftest import write_site  # noqa: E402

from bench.report import publish  # noqa: E402

LAB = "lynisbench"
SITE = {"name": "lynis", "cameras": [{"name": "yard", "source": {"type": "testsrc"}, "width": 320, "height": 180}]}


def on_pi(lab_obj, command: str, timeout: float = 900) -> str:
    result = subprocess.run(lab.ssh_argv(lab_obj, "pi1", command), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"on the Pi: {command}: exit {result.returncode}: {result.stderr[-500:]}")
    return result.stdout


def audit(lab_obj) -> dict:
    """One Lynis run; the figures from its machine-readable report."""
    on_pi(lab_obj, "rm -f /var/log/lynis-report.dat && lynis audit system --quick --no-colors --cronjob > /dev/null")
    report = on_pi(lab_obj, "cat /var/log/lynis-report.dat")
    values: dict[str, list[str]] = {}
    for line in report.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.removesuffix("[]"), []).append(value)
    return {
        "hardening_index": int(values["hardening_index"][0]),
        "warnings": sorted({w.split("|")[0] for w in values.get("warning", [])}),
        "suggestions": len(values.get("suggestion", [])),
        "lynis_version": values.get("lynis_version", ["?"])[0],
    }


def deploy_with(site_dir: Path, checkout: Path | None) -> None:
    if checkout is None:
        result = run_deploy(load_site(site_dir), Console(show_progress=False))
        if result.status != ExitStatus.OK:
            raise SystemExit(f"deploy failed: {result.failures}")
        return
    argv = [str(checkout / ".venv/bin/pi-stream"), "--quiet", "deploy", str(site_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False, cwd=checkout)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)}: exit {done.returncode}: {done.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-checkout", type=Path, help="a checkout of the earlier release, with its .venv")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    lab.down(LAB)  # a pristine Pi: nothing from an earlier run
    lab_obj = lab.up(LAB, hosts=1, progress=lambda _line: None)
    figures: dict = {"lab": f"{lab_obj.suite} {lab_obj.arch}"}
    try:
        with tempfile.TemporaryDirectory(prefix="lynis-bench-") as work:
            # An earlier release knows no `updates:` key (it would refuse the site); this one is told to stay unpatched.
            before = SITE if args.before_checkout else {**SITE, "updates": {"security": False}}
            site_dir = write_site(Path(work) / "site", before)
            lab_obj.write_inventory(site_dir / "inventory.yml")
            started = time.monotonic()
            deploy_with(site_dir, args.before_checkout)
            on_pi(lab_obj, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lynis > /dev/null")
            figures["before"] = {
                "deployed_by": str(args.before_checkout or "this release, updates.security: false"),
                **audit(lab_obj),
            }
            write_site(site_dir, SITE, viewers=False)
            lab_obj.write_inventory(site_dir / "inventory.yml")
            deploy_with(site_dir, None)
            pending = on_pi(lab_obj, "python3 /usr/local/lib/pi-stream/pi_stream_updates.py")
            on_pi(lab_obj, "unattended-upgrade")
            figures["after"] = {
                "deployed_by": "this release, default updates:, after its first unattended-upgrades run",
                "security_updates_installed": pending.count('"package"'),
                **audit(lab_obj),
            }
            figures["seconds"] = round(time.monotonic() - started)
    finally:
        lab.down(LAB)
    publish(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
