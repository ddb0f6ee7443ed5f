"""Viewer auth a Pi can afford (issue 4): the product's login + signed media cookie against plain basic auth, in one run.

What it measures, on a lab host (a simulated Pi) deployed with the product's own
workflow, from client network namespaces on the lab bridge (all on this machine):

  throughput  wrk -t2 -c8, a player's request mix (playlist, newest segment, playlist, ...)
              and the playlist alone, against
                none   a second nginx on the host, port 8443: no auth (the reference)
                token  the product on 443: the pi_stream_media cookie from a real login
                link   the product's player link (/v/<token>/...), for VLC and the like
                basic  the second nginx, port 8444: auth_basic with the viewer's stored hash
              Rounds are interleaved and the median taken; ratio = auth / none.
  flood       a logged-in viewer plays (playlist every fragment/4, every new segment) while
              16 connections send wrong passwords as fast as they can: to /auth/login for
              the product, as a wrong Authorization header for basic auth. Once from one
              address (the product's per-address login limit applies) and once from 16
              addresses with one connection each (a flood a per-address limit and fail2ban
              cannot stop). Reported: the viewer's p50/p99/max latency, missed segments
              (made on the host during the window but never fetched whole), the flood's
              rate and statuses, how much the host's logs grew, and for the product how
              long a second viewer's login takes in the middle of it. Each kind also
              plays once without a flood, as its reference.
  hash        the stored hash's scheme and cost, and one check's time on the host.

The second nginx serves the product's HLS directory with the product's certificate
and ssl_* settings, so only the auth differs. fail2ban is stopped during the floods
(a ban would end a one-address flood at once; the bench measures the flood it cannot
ban) and started again afterwards.

Usage (root, after scripts/install.sh; brings up and takes down lab "bench-auth"):
  .venv/bin/python bench/auth/run.py [--seconds 60] [--json out.json] [--keep-lab]
It takes about 15 minutes; take figures when nothing else runs here (the JSON lists what did).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream import lab  # noqa: E402  (after the sys.path line above)
from pi_stream.console import Console  # noqa: E402
from pi_stream.credentials import read_htpasswd, viewers_path  # noqa: E402
from pi_stream.errors import ExitStatus  # noqa: E402
from pi_stream.render import DEFAULT_PATHS  # noqa: E402
from pi_stream.site import load_site  # noqa: E402
from pi_stream.workflows import run_deploy  # noqa: E402

from bench.report import publish  # noqa: E402

HERE = Path(__file__).resolve().parent
LAB = "bench-auth"
HOST = "pi1"
CAMERA = "testcam"
VIEWER, PASSWORD = "viewer", "bench-viewer-password"
WRONG_PASSWORD = "not-the-password"
UNAUTH_PORT, BASIC_PORT = 8443, 8444
FLOOD_CONNECTIONS = 16
GRACE = 3  # seconds the viewer plays on after its window, to fetch the window's last segments (viewer.py --grace)
BENCH_DIR = "/run/bench-auth"  # the second nginx's config, pid, htpasswd and temp files; tmpfs, gone with the host
HLS_DIR = DEFAULT_PATHS["hls_dir"]
# nginx's logs, the login service's log, and everything else (journal, fail2ban) in /var/log.
LOG_DIRS = (DEFAULT_PATHS["nginx_log_dir"], DEFAULT_PATHS.get("auth_log_dir", "/var/log/pi-stream"), "/var/log")
# Issue 4's thresholds.
TARGETS = {"throughput_ratio_min": 0.9, "flood_p99_ms_max": 50, "flood_missed_segments_max": 0, "bcrypt_cost_min": 10}

BENCH_NGINX = """\
# bench/auth: a second nginx beside the product's, same certificate and ssl_* settings, same HLS directory.
user www-data;
worker_processes auto;
pid @DIR@/nginx.pid;
error_log @LOGDIR@/bench-auth-error.log error;

events {
    worker_connections 768;
}

http {
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    default_type application/octet-stream;
    access_log @LOGDIR@/bench-auth-access.log;
    client_body_temp_path @DIR@/tmp/body;
    proxy_temp_path @DIR@/tmp/proxy;
    fastcgi_temp_path @DIR@/tmp/fastcgi;
    uwsgi_temp_path @DIR@/tmp/uwsgi;
    scgi_temp_path @DIR@/tmp/scgi;
    client_header_buffer_size 1k;
    large_client_header_buffers 4 8k;
    keepalive_timeout 65s;
    limit_conn_zone $binary_remote_addr zone=bench_auth_addr:5m;
    map $uri $bench_auth_cache_control {
        ~\\.m3u8$ "no-cache";
        default "private, max-age=60";
    }

@SSL@

    # The reference: no auth at all.
    server {
        listen @UNAUTH_PORT@ ssl;
@MEDIA@
    }

    # The baseline: plain basic auth, the viewer's own stored hash, checked by nginx on every request.
    server {
        listen @BASIC_PORT@ ssl;
        auth_basic "bench";
        auth_basic_user_file @DIR@/htpasswd;
@MEDIA@
    }
}
"""

# The product's media headers (its own headers.conf, read where it is deployed) and Cache-Control and
# connection limit, so responses and per-request work are the same on every port but for the auth.
MEDIA_LOCATION = """\
        location /hls/ {
            alias @HLS@/;
            types {
                application/vnd.apple.mpegurl m3u8;
                video/mp2t ts;
            }
            limit_conn bench_auth_addr 64;
            add_header Cache-Control $bench_auth_cache_control always;
            include @NGINX_DIR@/headers.conf;
        }
        location / {
            return 404;
        }"""


def progress(message: str) -> None:
    print(f"[bench-auth] {message}", file=sys.stderr, flush=True)


class Host:
    """Commands on the lab host over the lab's SSH."""

    def __init__(self, lab_obj: lab.Lab, name: str) -> None:
        self.lab, self.name = lab_obj, name
        self.address = lab_obj.host(name).address

    def run(self, argv: list[str], *, stdin: str | None = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            lab.ssh_argv(self.lab, self.name, shlex.join(argv)), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            said = (result.stderr or result.stdout).strip()[-1500:]
            raise RuntimeError(f"{self.name}: {shlex.join(argv)[:200]} exited {result.returncode}: {said}")
        return result

    def sh(self, script: str, *args: str, stdin: str | None = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["sh", "-euc", script, "sh", *args], stdin=stdin, timeout=timeout, check=check)

    def write(self, path: str, text: str, mode: str, owner: str) -> None:
        # umask first: the htpasswd must never exist readable by others, not even for a moment.
        self.sh('umask 077; cat > "$1"; chown "$3" "$1"; chmod "$2" "$1"', path, mode, owner, stdin=text)


# ---------------------------------------------------------------- the site and the second nginx


def other_activity() -> dict:
    """The machine's load and anything else heavy running on it: figures taken beside a test run are not comparable."""
    heavy = ("ansible-playbook", "pytest", "systemd-nspawn", "wrk", "chromium", "debootstrap", "apt-get")
    result = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, timeout=30, check=True)
    others = set()
    for line in result.stdout.splitlines():
        if f"ps-{LAB}-" in line or "bench/auth" in line:
            continue  # this bench's own lab and processes
        programs = {Path(word).name for word in line.split()[:2]}  # the program, or the script an interpreter runs
        others.update(word for word in heavy if word in programs)
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "other_processes": sorted(others)}


def make_site(directory: Path, lab_obj: lab.Lab) -> Path:
    directory.mkdir(parents=True)
    site = {
        "name": "bench-auth",
        "cameras": [{"name": CAMERA, "title": "Test pattern", "source": {"type": "testsrc"}}],
        "firewall": {"extra_tcp_ports": [UNAUTH_PORT, BASIC_PORT]},
    }
    (directory / "site.yml").write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    lab_obj.write_inventory(directory / "inventory.yml")
    # The product's own command, so the stored hash is whatever `pi-stream user add` writes today.
    subprocess.run(
        [sys.executable, "-m", "pi_stream", "user", "add", str(directory), VIEWER, "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
    )
    return directory


def deploy(site_dir: Path) -> None:
    progress(f"deploying the site to {HOST} (the product's workflow, as the lab tests do)")
    result = run_deploy(load_site(site_dir), Console(out=sys.stderr, show_progress=False))  # stdout is for the figures
    if result.status != ExitStatus.OK:
        sys.exit(f"deploy failed: {result.failures}; events in {result.run_dir}")


def product_ssl_settings(host: Host) -> str:
    """The product's ssl_* directives, read from the deployed config, so TLS costs the same on every port."""
    text = host.run(["cat", f"{DEFAULT_PATHS['nginx_pi_stream_dir']}/http.conf"]).stdout
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("ssl_") and stripped not in lines:
            lines.append(stripped)
    if not any(line.startswith("ssl_certificate ") for line in lines):
        raise RuntimeError("the product's http.conf has no ssl_certificate: is web.https on?")
    return "\n".join(f"    {line}" for line in lines)


@contextlib.contextmanager
def bench_nginx(host: Host, htpasswd_line: str) -> Iterator[None]:
    media = MEDIA_LOCATION.replace("@HLS@", HLS_DIR).replace("@NGINX_DIR@", DEFAULT_PATHS["nginx_pi_stream_dir"])
    config = (
        BENCH_NGINX.replace("@SSL@", product_ssl_settings(host))
        .replace("@MEDIA@", media)
        .replace("@DIR@", BENCH_DIR)
        .replace("@LOGDIR@", DEFAULT_PATHS["nginx_log_dir"])
        .replace("@UNAUTH_PORT@", str(UNAUTH_PORT))
        .replace("@BASIC_PORT@", str(BASIC_PORT))
    )
    conf = f"{BENCH_DIR}/nginx.conf"
    stop = ["sh", "-c", f'[ ! -s {BENCH_DIR}/nginx.pid ] || nginx -c {conf} -s stop; sleep 0.5']
    host.run(stop, check=False)  # one left by an interrupted run
    host.run(["mkdir", "-p", f"{BENCH_DIR}/tmp"])
    host.write(conf, config, "0644", "root:root")
    host.write(f"{BENCH_DIR}/htpasswd", htpasswd_line + "\n", "0640", "root:www-data")
    host.run(["nginx", "-t", "-q", "-c", conf])
    host.run(["nginx", "-c", conf])
    try:
        yield
    finally:
        host.run(stop, check=False)


@contextlib.contextmanager
def fail2ban_stopped(host: Host) -> Iterator[None]:
    was_active = host.run(["systemctl", "is-active", "--quiet", "fail2ban"], check=False).returncode == 0
    if was_active:
        progress("stopping fail2ban for the floods (started again afterwards)")
        host.run(["systemctl", "stop", "fail2ban"], timeout=120)
    try:
        yield
    finally:
        if was_active:
            host.run(["systemctl", "start", "fail2ban"], timeout=120, check=False)


def wait_for_stream(host: Host, timeout: float = 90) -> None:
    playlist = f"{HLS_DIR}/{CAMERA}/index.m3u8"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = host.run(["cat", playlist], check=False)
        if result.returncode == 0 and result.stdout.count(".ts") >= 3:
            return
        time.sleep(1)
    sys.exit(f"no live playlist with 3 segments at {playlist} after {timeout:.0f} s: is the camera running?")


# ---------------------------------------------------------------- the hash


def hash_figures(host: Host, stored: str) -> dict:
    match = re.match(r"^\$(2[aby])\$(\d\d)\$", stored)
    prefix = stored.split("$")[1] if stored.startswith("$") else ""
    crypt_schemes = {"1": "md5-crypt", "apr1": "apr1-md5", "5": "sha256-crypt", "6": "sha512-crypt"}
    scheme = f"bcrypt ${match.group(1)}$" if match else crypt_schemes.get(prefix, "unknown")
    # crypt(3) is what nginx's auth_basic calls; the bcrypt module what a Python login service would. Password on stdin.
    probe = (
        "import sys, time, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "password, stored = sys.stdin.read().split('\\n')[:2]\n"
        "out = {}\n"
        "import crypt\n"
        "times = []\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); ok = crypt.crypt(password, stored) == stored; times.append(time.perf_counter() - t)\n"
        "out['crypt3_ms'] = round(sorted(times)[2] * 1000, 1); out['crypt3_ok'] = ok\n"
        "try:\n"
        "    import bcrypt\n"
        "    times = []\n"
        "    for _ in range(5):\n"
        "        t = time.perf_counter(); ok = bcrypt.checkpw(password.encode(), stored.encode()); times.append(time.perf_counter() - t)\n"
        "    out['bcrypt_module_ms'] = round(sorted(times)[2] * 1000, 1); out['bcrypt_module_ok'] = ok\n"
        "except (ImportError, ValueError) as exc:\n"
        "    out['bcrypt_module'] = repr(exc)\n"
        "import json; print(json.dumps(out))\n"
    )
    result = host.run(["python3", "-c", probe], stdin=f"{PASSWORD}\n{stored}\n", timeout=120)
    return {"scheme": scheme, "cost": int(match.group(2)) if match else None, "check_on_host_median_of_5": json.loads(result.stdout)}


# ---------------------------------------------------------------- clients


def wrk(client: lab.Client, url: str, threads: int, connections: int, seconds: float, script_args: list[str], headers: dict[str, str]):
    argv = [*client.exec_prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(HERE / "wrk.lua"), url, "--", *script_args]
    env = {**os.environ, "PI_STREAM_BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wrk_result(process: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=10)
    for line in out.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line.removeprefix("BENCH-JSON "))
    raise RuntimeError(f"wrk gave no result (exit {process.returncode}): {(err or out).strip()[-1000:]}")


def viewer_argv(client: lab.Client, command: str, base: str, *options: str) -> list[str]:
    return [*client.exec_prefix, sys.executable, str(HERE / "viewer.py"), command, base, VIEWER, "--camera", CAMERA, *options]


def login(client: lab.Client, base: str) -> dict:
    result = subprocess.run(viewer_argv(client, "login", base), input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"login helper failed: {result.stderr.strip()[-1500:]}")
    return json.loads(result.stdout.splitlines()[-1])


# ---------------------------------------------------------------- throughput


def throughput(targets: dict[str, tuple[str, str, dict[str, str]]], client: lab.Client, seconds: float, rounds: int) -> dict:
    """Interleaved rounds (none, token, link, basic, none, ...) so a slow patch of the shared CPU hits every target alike."""
    figures: dict = {}
    for mode in ("media", "playlist"):
        rates: dict[str, list[float]] = {name: [] for name in targets}
        statuses: dict[str, dict[str, int]] = {name: {} for name in targets}
        for number in range(1, rounds + 1):
            for name, (url, prefix, headers) in targets.items():
                result = wrk_result(wrk(client, url, 2, 8, seconds, [mode, prefix], headers), timeout=seconds + 60)
                rate = result["requests"] / (result["duration_us"] / 1e6)
                rates[name].append(round(rate, 1))
                for status, count in result["statuses"].items():
                    statuses[name][status] = statuses[name].get(status, 0) + count
                progress(f"throughput {mode} round {number}/{rounds} {name}: {rate:.0f} requests/s {result['statuses']}")
        medians = {name: statistics.median(values) for name, values in rates.items()}
        figures[mode] = {
            name: {
                "requests_per_s_median": round(medians[name], 1),
                "rounds": rates[name],
                "statuses": statuses[name],
                "ratio_to_none": round(medians[name] / medians["none"], 3),
            }
            for name in targets
        }
    for mode_figures in figures.values():
        for name, row in mode_figures.items():
            bad = sum(count for status, count in row["statuses"].items() if status != "200")
            if bad > 0.01 * sum(row["statuses"].values()):
                raise RuntimeError(f"throughput against {name}: {bad} non-200 answers {row['statuses']}: the ratio would measure an error page")
    return figures


# ---------------------------------------------------------------- the viewer under a flood


# Runs on the host for the length of a viewer phase: the camera playlist's newest media sequence number, every 0.1 s,
# stamped with CLOCK_REALTIME (the container shares this machine's clock). One process, so no ssh round trip sits
# between the moment asked for and the moment read; under a flood that round trip took seconds.
EDGE_WATCHER = """
import re, sys, time
path, end = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        text = open(path).read()
        first = int(re.search(r"^#EXT-X-MEDIA-SEQUENCE:(\\d+)", text, re.M).group(1))
        print(f"{time.time():.3f} {first + sum(1 for l in text.splitlines() if l and not l.startswith('#')) - 1}", flush=True)
    except (OSError, AttributeError, ValueError):
        pass  # the playlist is being replaced
    time.sleep(0.1)
"""


def edge_at(samples: list[tuple[float, int]], moment: float) -> tuple[int, float]:
    """The newest sequence number at `moment` (realtime), and how old the sample it comes from is."""
    before = [sample for sample in samples if sample[0] <= moment]
    if not before:
        raise RuntimeError("the host's playlist watcher has no sample from before the window: is the camera running?")
    stamp, sequence = before[-1]
    return sequence, round(moment - stamp, 2)


def log_sizes(host: Host) -> dict:
    script = 'for d in "$@"; do [ ! -e "$d" ] || du -sb "$d"; done'
    out = host.sh(script, *LOG_DIRS).stdout
    return {path: int(size) for size, path in (line.split("\t", 1) for line in out.splitlines())}


def journal_since(host: Host, since: float) -> dict:
    # Without sshd's lines: those are the bench's own ssh sessions.
    out = host.sh('journalctl --since "@$1" -q -o short | { grep -v " sshd\\[" || true; } | wc -lc', f"{since:.0f}").stdout.split()
    return {"lines": int(out[0]), "bytes": int(out[1])}


def flood_argv_for(kind: str, base: str) -> tuple[list[str], dict[str, str]]:
    if kind == "token":
        body = json.dumps({"user": VIEWER, "password": WRONG_PASSWORD})
        return ["request", "POST", "/auth/login", body], {"Content-Type": "application/json"}
    token = base64.b64encode(f"{VIEWER}:{WRONG_PASSWORD}".encode()).decode()
    return ["request", "GET", f"/hls/{CAMERA}/index.m3u8"], {"Authorization": f"Basic {token}"}


def viewer_phase(host: Host, kind: str, base: str, viewer: lab.Client, flooders: list[lab.Client], seconds: float, warmup: float) -> dict:
    """One viewer playing for `seconds` (after `warmup`), with the flood spread over `flooders` (none: the reference)."""
    before = log_sizes(host)
    started = time.time()
    children: list[subprocess.Popen] = []  # every process this phase starts, killed on the way out whatever happens
    try:
        # Started before anything loads the host: under a basic-auth flood a new ssh session took seconds to get going.
        watcher = subprocess.Popen(
            lab.ssh_argv(host.lab, host.name, shlex.join(["python3", "-c", EDGE_WATCHER, f"{HLS_DIR}/{CAMERA}/index.m3u8",
                                                          f"{warmup + seconds + GRACE + 120:g}"])),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        children.append(watcher)
        ready, _, _ = select.select([watcher.stdout], [], [], 30)
        first_sample = watcher.stdout.readline() if ready else ""
        if not first_sample:
            raise RuntimeError("the playlist watcher on the host did not start")
        process = subprocess.Popen(
            viewer_argv(viewer, "play", base, "--auth", kind, "--seconds", f"{seconds:g}", "--warmup", f"{warmup:g}", "--grace", f"{GRACE:g}"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        children.append(process)
        process.stdin.write(PASSWORD + "\n")
        process.stdin.close()
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().split() if ready else []
        if not line or line[0] != "ready":
            raise RuntimeError(f"the viewer did not start: {' '.join(line) or process.stderr.read()[-1500:]}")
        window = float(line[1]), float(line[2])
        script_args, headers = flood_argv_for(kind, base)
        per_client = FLOOD_CONNECTIONS // len(flooders) if flooders else 0
        for client in flooders:
            # Threads: two at most, the machine has two cores; one connection needs one.
            children.append(wrk(client, base + "/", min(2, per_client), per_client, warmup + seconds + GRACE + 1, script_args, headers))
        process.wait(timeout=warmup + seconds + GRACE + 60)
        watcher.kill()  # the ssh client; the remote loop dies at its next write (broken pipe), or by its own time limit
        watched = first_sample + watcher.communicate(timeout=30)[0]  # ~20 bytes a sample: the pipe never fills
        out, err = process.stdout.read(), process.stderr.read()  # one JSON line, or a short traceback: no pipe fills up
        if process.returncode != 0:
            raise RuntimeError(f"viewer failed ({process.returncode}): {(out + err).strip()[-1500:]}")
        figures = json.loads(out.strip().splitlines()[-1])
        # The segments the camera made during the window, from the host's own playlist (not behind nginx).
        realtime = time.time() - time.monotonic()
        samples = [(float(stamp), int(sequence)) for stamp, sequence in (row.split() for row in watched.splitlines())]
        (first, first_age), (last, last_age) = (edge_at(samples, moment + realtime) for moment in window)
        fetched = set(figures.pop("fetched_sequences"))
        if last < first:
            raise RuntimeError(f"the camera's media sequence went back during the window ({first} -> {last}): it restarted; run again")
        made = range(first + 1, last + 1)
        figures["segments_made"] = len(made)
        figures["missed_segments"] = sum(sequence not in fetched for sequence in made)
        figures["edge_sample_age_s"] = max(first_age, last_age)  # how stale the host's playlist reading was at the window's ends
        flood_results = [wrk_result(flood, timeout=warmup + seconds + 60) for flood in children[2:]]
    finally:
        for running in children:
            if running.poll() is None:
                running.kill()
                running.wait(timeout=10)
    after = log_sizes(host)
    figures["log_growth_bytes"] = {path: after[path] - before.get(path, 0) for path in after}
    figures["journal"] = journal_since(host, started)
    if flood_results:
        duration = max(r["duration_us"] for r in flood_results) / 1e6
        statuses: dict[str, int] = {}
        errors: dict[str, int] = {}
        for result in flood_results:
            for status, count in result["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
            for name, count in result["errors"].items():
                errors[name] = errors.get(name, 0) + count
        total = sum(r["requests"] for r in flood_results)
        figures["flood"] = {
            "addresses": len(flooders),
            "connections": per_client * len(flooders),
            "requests": total,
            "requests_per_s": round(total / duration, 1),
            "statuses": statuses,
            # wrk's "status" errors are the non-2xx answers, already in statuses.
            "errors": {name: count for name, count in errors.items() if count and name != "status"},
            "log_bytes_per_request": round(figures["log_growth_bytes"].get("/var/log", 0) / max(total, 1), 1),
        }
    return figures


def verdict(figures: dict) -> dict:
    def flood_ok(row: dict) -> bool:
        return row["all"].get("p99_ms", 1e9) < TARGETS["flood_p99_ms_max"] and row["missed_segments"] <= TARGETS["flood_missed_segments_max"]

    out = {}
    for kind in figures["viewer"]:
        ratio = figures["throughput"]["media"][kind]["ratio_to_none"]
        out[kind] = {
            "throughput_ratio_media": ratio,
            "throughput_ok": ratio >= TARGETS["throughput_ratio_min"],
            "flood_one_address_ok": flood_ok(figures["viewer"][kind]["flood_one_address"]),
            "flood_16_addresses_ok": flood_ok(figures["viewer"][kind]["flood_16_addresses"]),
        }
    out["hash_ok"] = (figures["hash"]["cost"] or 0) >= TARGETS["bcrypt_cost_min"]
    return out


# ---------------------------------------------------------------- main


def run(lab_obj: lab.Lab, site_dir: Path, args: argparse.Namespace) -> dict:
    host = Host(lab_obj, HOST)
    stored = read_htpasswd(viewers_path(site_dir))[VIEWER]
    product = f"https://{host.address}"
    figures: dict = {"hash": hash_figures(host, stored)}
    progress(f"stored hash: {figures['hash']}")
    wait_for_stream(host)
    with contextlib.ExitStack() as stack:
        stack.enter_context(bench_nginx(host, f"{VIEWER}:{stored}"))
        viewer = stack.enter_context(lab.client_namespace(lab_obj, "bench-auth-viewer"))
        flooders = [stack.enter_context(lab.client_namespace(lab_obj, f"bench-auth-flood{i}")) for i in range(FLOOD_CONNECTIONS)]
        basic = base64.b64encode(f"{VIEWER}:{PASSWORD}".encode()).decode()
        targets = {"none": (f"https://{host.address}:{UNAUTH_PORT}/", f"/hls/{CAMERA}/", {})}
        kinds = ("basic",) if args.baseline_only else ("token", "basic")
        if "token" in kinds:
            session = login(viewer, product)
            if session["status"] != 200:
                raise RuntimeError(f"the viewer's login answered {session['status']}: is the login service deployed?")
            targets["token"] = (product + "/", session["playlist"].rsplit("/", 1)[0] + "/", {"Cookie": session["cookie"]})
            if session.get("link"):
                targets["link"] = (product + "/", session["link"].rsplit("/", 1)[0] + "/", {})
            else:
                figures["link_unavailable"] = f"POST /auth/link answered {session.get('link_status')}"
        targets["basic"] = (f"https://{host.address}:{BASIC_PORT}/", f"/hls/{CAMERA}/", {"Authorization": f"Basic {basic}"})
        figures["throughput"] = throughput(targets, viewer, args.throughput_seconds, args.rounds)

        viewers: dict = {kind: {} for kind in kinds}
        bases = {"token": product, "basic": f"https://{host.address}:{BASIC_PORT}"}
        for kind in kinds:
            progress(f"viewer {kind}: reference, no flood, {args.seconds:g} s")
            viewers[kind]["no_flood"] = viewer_phase(host, kind, bases[kind], viewer, [], args.seconds, args.warmup)
        with fail2ban_stopped(host):
            for kind in kinds:
                for label, group in (("flood_one_address", flooders[:1]), ("flood_16_addresses", flooders)):
                    time.sleep(args.settle)  # let the last phase's queued work drain
                    progress(f"viewer {kind}: {label}, {args.seconds:g} s")
                    viewers[kind][label] = viewer_phase(host, kind, bases[kind], viewer, group, args.seconds, args.warmup)
                    row = viewers[kind][label]
                    progress(f"  p99 {row['all'].get('p99_ms')} ms, missed {row['missed_segments']}, flood {row['flood']}")
        figures["viewer"] = viewers
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 60 s: ~300 viewer requests per phase, so the p99 is not simply the second-worst request.
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per viewer phase (each flood, each reference)")
    parser.add_argument("--throughput-seconds", type=float, default=10, help="seconds per wrk throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (median taken)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds the flood runs before the viewer's figures count")
    parser.add_argument("--settle", type=float, default=3, help="seconds between floods")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--baseline-only", action="store_true", help="only the reference and basic auth (a checkout without the login service)")
    parser.add_argument("--keep-lab", action="store_true", help=f"leave lab {LAB!r} up afterwards (`pi-stream lab down --name {LAB}`)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    activity = {"at_start": other_activity()}
    if activity["at_start"]["other_processes"]:
        progress(f"warning: also running here: {', '.join(activity['at_start']['other_processes'])}; the figures may be disturbed")
    lab_obj = lab.up(LAB, hosts=1, suite="bookworm", arch="amd64", progress=progress)
    try:
        with tempfile.TemporaryDirectory(prefix="pi-stream-bench-auth-") as tmp:
            site_dir = make_site(Path(tmp) / "bench-auth", lab_obj)
            deploy(site_dir)
            figures = run(lab_obj, site_dir, args)
    finally:
        if not args.keep_lab:
            progress(f"taking lab {LAB} down")
            lab.down(LAB)
    activity["at_end"] = other_activity()
    figures["other_activity"] = activity
    figures["targets"] = TARGETS
    figures["verdict"] = verdict(figures)
    figures["settings"] = {
        "seconds_per_viewer_phase": args.seconds,
        "throughput_seconds": args.throughput_seconds,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "grace_s": GRACE,
        "wrk": "-t2 -c8 (throughput); 16 connections (flood)",
    }
    publish(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
