"""How long a deploy takes when little or nothing changes: the roles at a baseline commit against this checkout's, same run.

One simulated Pi ("deploybench", bookworm) with the README's default camera.
It is provisioned once; then, in alternating rounds, each variant's playbook
and roles (the baseline's from a git worktree, this checkout's) run against it:

  unchanged  a deploy with nothing to change (what a re-run costs)
  viewer     a deploy after `pi-stream user add` (one file changes on the Pi;
             the shape of most day-to-day deploys), then another after
             `user remove`, so every round starts from the same state

The bundle is rendered by this checkout's pi-stream for both, so the two
variants install the same bytes; only the roles' way of getting there differs.
Each figure is the median of --rounds; a variant whose deploy changes anything
on an unchanged run fails the benchmark (idempotence first).

Usage (root, after scripts/install.sh):
  .venv/bin/python bench/deploy/run.py --baseline REV [--rounds 3] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.report import publish  # noqa: E402
from pi_stream import credentials, deploy, lab  # noqa: E402
from pi_stream.console import Console  # noqa: E402
from pi_stream.errors import ExitStatus  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from pi_stream.workflows import run_deploy  # noqa: E402
from tests.conftest import write_site  # noqa: E402

LAB = "deploybench"
EXTRA_VIEWER, EXTRA_PASSWORD = "visitor", "a visitor for one deploy"


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="deploybench-") as parent:
        path = Path(parent) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False,
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def roles_of(tree: Path) -> Iterator[None]:
    """pi-stream's deploy with the playbook and roles of `tree` (render and everything else stay this checkout's)."""
    saved = deploy.PLAYBOOK, deploy.ROLES_DIR
    deploy.PLAYBOOK, deploy.ROLES_DIR = tree / "playbooks" / "site.yml", tree / "roles"
    try:
        yield
    finally:
        deploy.PLAYBOOK, deploy.ROLES_DIR = saved


def timed_deploy(site_dir: Path) -> tuple[float, int]:
    started = time.monotonic()
    result = run_deploy(load_site(site_dir), Console(show_progress=False))
    took = time.monotonic() - started
    if result.status != ExitStatus.OK:
        raise SystemExit(f"deploy failed: {result.failures}")
    return took, result.changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit whose roles to compare with (e.g. the one before a change)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    figures: dict = {"lab": "one bookworm amd64 container, one testsrc camera (640x360, 15 fps)",
                     "baseline": args.baseline, "current": head + (" + uncommitted" if dirty() else "")}
    state = lab.up(LAB, hosts=1, progress=print)
    try:
        with tempfile.TemporaryDirectory() as workdir, worktree(args.baseline) as baseline:
            site_dir = write_site(Path(workdir) / "bench", {"name": "bench", "cameras": [{"name": "cam", "source": {"type": "testsrc"}}]})
            state.write_inventory(site_dir / "inventory.yml")
            figures["first_deploy_s"] = round(timed_deploy(site_dir)[0], 1)
            variants = {"baseline": baseline, "current": REPO}
            runs: dict[str, dict[str, list[float]]] = {name: {"unchanged": [], "viewer": []} for name in variants}
            for round_number in range(args.rounds):
                order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
                for name in order:
                    with roles_of(variants[name]):
                        took, changed = timed_deploy(site_dir)
                        if changed:
                            raise SystemExit(f"{name}: an unchanged deploy changed {changed} things")
                        runs[name]["unchanged"].append(round(took, 1))
                        credentials.add_user(site_dir, EXTRA_VIEWER, EXTRA_PASSWORD)
                        added = timed_deploy(site_dir)[0]
                        credentials.remove_user(site_dir, EXTRA_VIEWER)
                        removed = timed_deploy(site_dir)[0]
                        runs[name]["viewer"] += [round(added, 1), round(removed, 1)]
                    print(name, runs[name], flush=True)
            figures["runs_s"] = runs
            figures["median_s"] = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in runs.items()}
            figures["current_over_baseline"] = {
                kind: round(figures["median_s"]["current"][kind] / figures["median_s"]["baseline"][kind], 2) for kind in ("unchanged", "viewer")
            }
    finally:
        if not args.keep:
            lab.down(LAB)
    publish(figures, args.json)
    return 0


def dirty() -> bool:
    return bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "roles", "playbooks"], capture_output=True,
                               text=True, timeout=30).stdout.strip())


if __name__ == "__main__":
    sys.exit(main())
