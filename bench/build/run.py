"""Wall time of a source build (nginx, or OvenMediaEngine): a cold build, a re-run, and a second host installing the cached package.

The role's own tasks (roles/nginx_rtmp/tasks/install-source.yml through
bench/build/build.yml; roles/webrtc_ome/tasks/install-source.yml through
bench/build/build-ome.yml) run against a lab of two simulated Pis with an
empty controller cache:

  cold      pi1: download nothing (sources are fetched and checked first, timed apart),
            install the build tools, configure, make -j, package, fetch to the cache, install
  rerun     pi1 again: the package is installed, nothing is built
  second    pi2: the package is in the controller's cache; copied and installed, nothing built

Each figure is the wall time of one ansible-playbook run (its start-up included).

Usage (root; after scripts/install.sh):
  .venv/bin/python bench/build/run.py [--arch amd64|arm64] [--suite bookworm] [--keep] [--json out.json]
  .venv/bin/python bench/build/run.py --package ome --ome-file ../shared/vendor/OvenMediaEngine-0.19.0.tar.gz [--no-optimize]
nginx on amd64 takes about 5 minutes here, OME about 40 (optimised) or 20
(--no-optimize: site.yml webrtc.source.optimize false); arm64 runs under
qemu-user emulation and takes far longer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream import lab  # noqa: E402
from pi_stream.deploy import CALLBACK_DIR, ROLES_DIR  # noqa: E402
from pi_stream import ome_source  # noqa: E402
from pi_stream.nginx_source import DEFAULT_NGINX_SOURCE, fetch_archives, fetch_sources, role_vars  # noqa: E402
from pi_stream.site.webrtc import DEFAULT_OME_BUILD  # noqa: E402

from bench.report import publish  # noqa: E402

PLAYBOOKS = {"nginx": Path(__file__).with_name("build.yml"), "ome": Path(__file__).with_name("build-ome.yml")}
STAGES = (("cold", "pi1"), ("rerun", "pi1"), ("second", "pi2"))


def run_playbook(playbook_file: Path, inventory: Path, extra_vars: Path, limit: str, timeout: float) -> tuple[float, dict]:
    """Seconds and the host's Ansible stats (changed count) for one run, from the events callback."""
    events = inventory.parent / f"events-{limit}-{time.monotonic_ns()}.jsonl"
    env = {
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_STDOUT_CALLBACK": "pi_stream_events",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    playbook = str(Path(sys.executable).with_name("ansible-playbook"))
    argv = [playbook, "-i", str(inventory), str(playbook_file), "-e", f"@{extra_vars}", "--limit", limit]
    started = time.monotonic()
    with open(events, "w") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{limit}: ansible-playbook exited {result.returncode}; events in {events}\n{result.stderr[-2000:]}")
    stats = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "stats":
            stats = event.get("hosts", {}).get(limit, {})
    return seconds, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="amd64", choices=("amd64", "arm64"))
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per playbook run")
    parser.add_argument("--package", default="nginx", choices=sorted(PLAYBOOKS))
    parser.add_argument("--ome-file", type=Path, help="OME's release tarball (the default URL's bytes), for a lab with no GitHub")
    parser.add_argument("--no-optimize", action="store_true", help="OME: webrtc.source.optimize false (-O0, no debug info)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    name = f"bbuild-{args.arch}"
    work = Path(tempfile.mkdtemp(prefix="pi-stream-bench-build-"))
    cache = work / "cache"
    started = time.monotonic()
    if args.package == "nginx":
        fetch_sources(DEFAULT_NGINX_SOURCE, "bench", cache, print)
        role_inputs = {"nginx_rtmp_source": role_vars(DEFAULT_NGINX_SOURCE)}
        built = {"nginx": DEFAULT_NGINX_SOURCE.nginx.version, "rtmp_module": DEFAULT_NGINX_SOURCE.rtmp_module.version}
    else:
        source = DEFAULT_OME_BUILD
        if args.ome_file:
            source = replace(source, ome=replace(source.ome, url="", file=args.ome_file.resolve()))
        source = replace(source, optimize=not args.no_optimize)
        fetch_archives(ome_source.archives(source), "bench", cache, print)
        role_inputs = {"webrtc_ome_source": ome_source.role_vars(source), "webrtc_ome_enabled": False}
        built = {"ome": source.ome.version, "spdlog": source.spdlog.version, "optimize": source.optimize}
    fetch_seconds = time.monotonic() - started
    state = lab.up(name, hosts=2, suite=args.suite, arch=args.arch, progress=print)
    try:
        inventory = work / "inventory.yml"
        state.write_inventory(inventory)
        extra_vars = work / "vars.json"
        extra_vars.write_text(json.dumps({**role_inputs, "pi_stream_cache": str(cache)}))
        figures = {}
        for stage, host in STAGES:
            print(f"== {stage} on {host}", flush=True)
            seconds, stats = run_playbook(PLAYBOOKS[args.package], inventory, extra_vars, host, args.timeout)
            figures[stage] = {"host": host, "seconds": round(seconds, 1), "changed": stats.get("changed")}
            print(f"   {seconds:.1f} s, {stats.get('changed')} changed", flush=True)
        packages = sorted(p.name for p in cache.glob("packages/*/*.deb"))
    finally:
        if not args.keep:
            lab.down(name)
    publish(
        {
            "lab": f"{args.suite} {args.arch}, 2 hosts" + (" (qemu-user emulation)" if args.arch != "amd64" else ""),
            **built,
            "fetch_and_check_seconds": round(fetch_seconds, 1),
            "stages": figures,
            "packages_built": packages,
            "rerun_vs_cold": round(figures["rerun"]["seconds"] / figures["cold"]["seconds"], 3),
            "second_host_vs_cold": round(figures["second"]["seconds"] / figures["cold"]["seconds"], 3),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
