"""A thread-starving login flood, and logged-in viewers (HLS and DVR) unaffected: the login service before and after
the fix for review finding 2 (commit 6000a82), everything else identical, in one run.

pi-stream-auth.service runs under TasksMax=64, and every thread is a task. Before the fix it started a thread per
connection, each waiting up to 5 s for the one bcrypt slot: 70 connections of wrong passwords took every task, and
nginx's auth_request for a logged-in DVR viewer (which needs the service on every request) got no answer (a 500).
Now the queue for the slot is bounded (MAX_WAITING) and so are the threads (MAX_THREADS, 503 past them).

Per variant (before: the service from BEFORE_COMMIT; after: the working tree's), on loopback only:
  - the real nginx with the current rendered tree under a temporary root, the fake DVR published with viewer_auth
    (as tests/configs/test_dvr_flow.py's `guarded`), an HLS playlist and segment for one camera (as
    tests/configs/test_auth_flow.py writes them);
  - the login service started here in a cgroup v1 pids group whose pids.max is the unit's TasksMax (as
    tests/configs/test_auth_starvation.py does), so "can't start new thread" happens as it would on the Pi;
  - a viewer logs in through nginx before the flood (the media cookie; the DVR login gives pi_stream_dvr), then from
    its own address fetches the HLS playlist and a DVR page (auth_request to the service) every 100 ms each;
  - phase `socket`: 70 connections of wrong-password logins straight at the service's socket (the flood that reached
    it through the then unlimited location), a warmup, then the measured window;
  - phase `nginx`: the same 7 addresses x 10 connections through nginx at the DVR's login (limit_req answers 429).
  - phase `quiet`: the viewer alone, no flood: its latency on this machine at this moment, the reference.
The service is started afresh for each phase. Reported: the viewer's requests, failures by status, p50/p99/max
latency (measured window only); the flood's answers by status or error (warmup and window); "can't start new thread"
lines in the service's stderr; the service's peak threads (/proc/PID/status) and the cgroup's refused forks.

Usage (root; nginx, /usr/bin/python3 with bcrypt, cgroup v1 pids at /sys/fs/cgroup/pids; about 2.5 minutes):
  .venv/bin/python bench/auth/starve.py [--seconds 20] [--warmup 3] [--phases quiet,socket,nginx] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream.lab.dvr import FakeDvr, fake_dvr  # noqa: E402  (after the sys.path line above)
from pi_stream.render import TEMPLATES_DIR  # noqa: E402
from tests.conftest import VIEWER, VIEWER_PASSWORD, wait_until, write_site  # noqa: E402
from tests.configs.tree import (  # noqa: E402
    RootedAppliance,
    PIDS_CGROUP_ROOT,
    UnixHTTPConnection,
    auth_tasks_max,
    auth_tool_argv,
    in_cgroup_argv,
    loopback_session,
    pids_cgroup,
    port_open,
    prepare_rooted_appliance,
    running,
)

BEFORE_COMMIT = "98a548a"  # the parent of 6000a82, the fix
SERVICE = "usr/local/lib/pi-stream/pi_stream_auth.py"
HTTPS_PORT, HTTP_PORT, WS_PORT = 19443, 19080, 19682
NAME = "dvr.starve.test"
DVR_USER, DVR_PASSWORD = "admin", "dvr:p@ss/word"
DVR_PAGE = "/doc/page/login.asp"
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\n7.ts\n"
VIEWER_ADDRESS = "127.0.0.20"
FLOOD_ADDRESSES = [f"127.0.0.{31 + i}" for i in range(7)]
CONNECTIONS_PER_ADDRESS = 10
INTERVAL = 0.1  # the viewer's pause between two fetches of one kind
VIEWER_TIMEOUT = 15.0  # more than nginx's 10 s for the auth_request
FLOOD_TIMEOUT = 15.0
MAX_FLOOD_REQUESTS = 20_000  # per flood connection and phase; the deadline ends it long before
THREAD_LINE = "can't start new thread"


def require_pids_cgroup() -> None:
    if os.geteuid() != 0:
        sys.exit("starve.py: run as root (it makes a pids cgroup and runs nginx from a temporary root)")
    if not (PIDS_CGROUP_ROOT / "cgroup.procs").exists():
        sys.exit(f"starve.py: no cgroup v1 pids controller at {PIDS_CGROUP_ROOT}: this bench reproduces the unit's "
                 "TasksMax with it (mount -t cgroup -o pids none /sys/fs/cgroup/pids)")
    if shutil.which("nginx") is None:
        sys.exit("starve.py: nginx not installed: run scripts/install.sh")
    taken = [port for port in (HTTPS_PORT, HTTP_PORT, WS_PORT) if port_open(port)]
    if taken:
        sys.exit(f"starve.py: port(s) {taken} taken on this machine")


def socket_login(path: Path, password: str) -> int | str:
    """One login straight at the service's socket: the status, or the error's name when there was no answer."""
    connection = UnixHTTPConnection(path, FLOOD_TIMEOUT)
    body = json.dumps({"user": VIEWER, "password": password}).encode()
    try:
        connection.request("POST", "/auth/login", body=body,
                           headers={"Host": "cam.test", "Content-Type": "application/json", "Connection": "close"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        connection.close()


class CgroupAppliance(RootedAppliance):
    """The rooted appliance, its login service started in a pids cgroup limited to the unit's TasksMax, with the
    service file of one variant, its stderr kept per start."""

    def __init__(self, root: Path, site_dir: Path, cgroup: Path) -> None:
        super().__init__(root, site_dir)
        self.cgroup = cgroup
        self.stderr_path: Path | None = None
        self.starts = 0

    def start_service(self) -> None:
        self.stop_service()
        self.starts += 1
        self.stderr_path = self.root / f"service-stderr-{self.starts}.log"
        with self.stderr_path.open("wb") as errors:
            # Into the cgroup before Python starts a single thread, as systemd starts the unit.
            self.service = subprocess.Popen(
                in_cgroup_argv(self.cgroup, auth_tool_argv(self.root, "serve", "--listen", str(self.socket))),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        wait_until(self.socket.exists, "the login service's socket", seconds=15, interval=0.05)

    def stop_service(self) -> None:
        if self.service:
            self.service.send_signal(signal.SIGKILL)
            self.service.wait(timeout=10)
            self.service = None
        self.socket.unlink(missing_ok=True)

    def thread_lines(self) -> int:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path else ""
        return sum(THREAD_LINE in line for line in text.splitlines())

    def refused_forks(self) -> int:
        """How often the cgroup refused a new task (pids.events "max"), since it was made."""
        events = self.cgroup / "pids.events"
        match = re.search(r"^max (\d+)$", events.read_text(), re.MULTILINE) if events.exists() else None
        return int(match.group(1)) if match else -1


@contextlib.contextmanager
def appliance(base: Path, dvr: FakeDvr, service_source: bytes, cgroup: Path) -> Iterator[CgroupAppliance]:
    """As test_dvr_flow's `guarded`, plus test_auth_flow's HLS files, with one variant's service file."""
    shed = {"host": "127.0.0.1", "server_name": NAME, "http_port": dvr.http_port,
            "websocket_ports": [{"tls": WS_PORT, "plain": dvr.ws_port}]}
    site = {
        "name": "starve",
        "web": {"https_port": HTTPS_PORT, "http_port": HTTP_PORT},
        "cameras": [{"name": "garden", "source": {"type": "testsrc"}}],
        "fail2ban": {"maxretry": 3},
        "dvr_proxy": {"shed": {**shed, "viewer_auth": True, "login_paths": []}},
    }
    site_dir = write_site(base / "site", site)
    root = base / "root"
    prepare_rooted_appliance(site_dir, root)
    (root / SERVICE).write_bytes(service_source)
    hls = root / "run/pi-stream/hls/garden"
    hls.mkdir(parents=True)
    (hls / "index.m3u8").write_text(PLAYLIST)
    (hls / "7.ts").write_bytes(b"\x47" * 188 * 10)
    started = CgroupAppliance(root, site_dir, cgroup)
    pid_file = root / "run/nginx.pid"
    try:
        with running(started, HTTPS_PORT):
            yield started
    finally:
        # running() asked nginx to stop; make sure its master is gone before the next variant takes the ports.
        with contextlib.suppress(FileNotFoundError, ValueError):
            master = int(pid_file.read_text())
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not Path(f"/proc/{master}").exists(), "nginx to stop", seconds=10)
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGKILL)


def viewer_cookies(app: CgroupAppliance) -> tuple[str, str]:
    """A viewer's login through nginx, before any flood: the media cookie (appliance login) and the DVR's cookie."""
    session = loopback_session(VIEWER_ADDRESS, str(app.certificate))
    credentials = {"user": VIEWER, "password": VIEWER_PASSWORD}
    login = session.post(f"https://127.0.0.1:{HTTPS_PORT}/auth/login", json=credentials, timeout=30)
    if login.status_code != 200 or "pi_stream_media" not in login.cookies:
        raise SystemExit(f"starve.py: the viewer's login through nginx: {login.status_code} {login.text[:200]}")
    dvr = loopback_session(VIEWER_ADDRESS, str(app.certificate))
    dvr.headers["Host"] = f"{NAME}:{HTTPS_PORT}"
    dvr_login = dvr.post(f"https://127.0.0.1:{HTTPS_PORT}/_pi_stream/auth/login", json=credentials, timeout=30)
    if dvr_login.status_code != 200 or "pi_stream_dvr" not in dvr_login.cookies:
        raise SystemExit(f"starve.py: the viewer's DVR login through nginx: {dvr_login.status_code} {dvr_login.text[:200]}")
    # One media cookie per path the camera's files live under; the HLS one is the player's.
    media = next(c.value for c in login.cookies if c.name == "pi_stream_media" and c.path.startswith("/hls/garden"))
    return f"pi_stream_media={media}", f"pi_stream_dvr={dvr_login.cookies['pi_stream_dvr']}"


def summary(samples: list[tuple[int | str, float]], ok: int) -> dict:
    latencies = sorted(seconds * 1000 for _, seconds in samples)
    failures = Counter(str(status) for status, _ in samples if status != ok)

    def rank(q: float) -> float:
        return round(latencies[max(0, math.ceil(q * len(latencies)) - 1)], 1) if latencies else float("nan")

    return {"requests": len(samples), "failures": sum(failures.values()), "failures_by_status": dict(failures),
            "p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": round(latencies[-1], 1) if latencies else float("nan")}


def bounded_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    alive = sum(thread.is_alive() for thread in threads)
    if alive:
        raise RuntimeError(f"{alive} client thread(s) did not stop")


def run_phase(app: CgroupAppliance, phase: str, cookies: tuple[str, str], seconds: float, warmup: float) -> dict:
    app.start_service()  # afresh: no thread left over from the last phase
    pid = app.service.pid
    media_cookie, dvr_cookie = cookies
    refused_before = app.refused_forks()
    lock = threading.Lock()
    flood: Counter = Counter()
    hls: list[tuple[int | str, float]] = []
    dvr: list[tuple[int | str, float]] = []
    start = time.monotonic()
    window_start = start + warmup
    deadline = window_start + seconds

    def socket_attacker() -> None:
        for attempt in range(MAX_FLOOD_REQUESTS):
            if time.monotonic() > deadline:
                return
            status = socket_login(app.socket, f"guess {attempt}")
            with lock:
                flood[str(status)] += 1

    def nginx_attacker(address: str) -> Callable[[], None]:
        def attack() -> None:
            session = loopback_session(address, str(app.certificate))
            session.headers["Host"] = f"{NAME}:{HTTPS_PORT}"
            url = f"https://127.0.0.1:{HTTPS_PORT}/_pi_stream/auth/login"
            for attempt in range(MAX_FLOOD_REQUESTS):
                if time.monotonic() > deadline:
                    return
                try:
                    status: int | str = session.post(url, json={"user": VIEWER, "password": f"guess {attempt}"},
                                                     timeout=FLOOD_TIMEOUT).status_code
                except Exception as exc:  # noqa: BLE001  (any failure to get an answer is a figure)
                    status = type(exc).__name__
                with lock:
                    flood[str(status)] += 1
        return attack

    def watcher(url: str, cookie: str, host: str, into: list) -> Callable[[], None]:
        def watch() -> None:
            session = loopback_session(VIEWER_ADDRESS, str(app.certificate))
            session.headers["Host"] = host
            while time.monotonic() < window_start:
                time.sleep(0.05)
            for _ in range(int(seconds / INTERVAL) + 10):
                if time.monotonic() > deadline:
                    return
                began = time.monotonic()
                try:
                    status: int | str = session.get(url, headers={"Cookie": cookie}, timeout=VIEWER_TIMEOUT,
                                                    allow_redirects=False).status_code
                except Exception as exc:  # noqa: BLE001
                    status = type(exc).__name__
                into.append((status, time.monotonic() - began))
                time.sleep(max(0.0, INTERVAL - (time.monotonic() - began)))
        return watch

    if phase == "quiet":
        attackers = []
    elif phase == "socket":
        attackers = [socket_attacker] * (len(FLOOD_ADDRESSES) * CONNECTIONS_PER_ADDRESS)
    else:
        attackers = [nginx_attacker(address) for address in FLOOD_ADDRESSES for _ in range(CONNECTIONS_PER_ADDRESS)]
    base = f"https://127.0.0.1:{HTTPS_PORT}"
    watchers = [watcher(f"{base}/hls/garden/index.m3u8", media_cookie, "127.0.0.1", hls),
                watcher(f"{base}{DVR_PAGE}", dvr_cookie, f"{NAME}:{HTTPS_PORT}", dvr)]
    peak = [0]

    def sample_threads() -> None:
        for _ in range(int((warmup + seconds + 60) / 0.02)):
            if time.monotonic() > deadline + 1:
                return
            with contextlib.suppress(OSError, AttributeError):
                status = Path(f"/proc/{pid}/status").read_text()
                peak[0] = max(peak[0], int(re.search(r"^Threads:\s+(\d+)$", status, re.MULTILINE).group(1)))
            time.sleep(0.02)

    load_before = os.getloadavg()
    bounded_threads([*attackers, *watchers, sample_threads])
    alive = app.service.poll() is None
    return {
        "viewer_hls": summary(hls, 200),
        "viewer_dvr": summary(dvr, 200),
        "flood": dict(sorted(flood.items())),
        "flood_seconds": round(time.monotonic() - start, 1),
        "cant_start_new_thread_lines": app.thread_lines(),
        "peak_threads": peak[0],
        "refused_forks": app.refused_forks() - refused_before,
        "service_alive_after": alive,
        "load_average_before_after": [round(x, 2) for x in (*load_before, *os.getloadavg())],
    }


def variant(label: str, source: bytes, dvr: FakeDvr, phases: list[str], seconds: float, warmup: float) -> dict:
    with (
        tempfile.TemporaryDirectory(prefix=f"starve-{label}-") as directory,
        pids_cgroup(f"bench-{label}") as cgroup,
        appliance(Path(directory), dvr, source, cgroup) as app,
    ):
        cookies = viewer_cookies(app)
        return {phase: run_phase(app, phase, cookies, seconds, warmup) for phase in phases}


def counts(counter: dict) -> str:
    return ", ".join(f"{count:,} x {key}" for key, count in sorted(counter.items(), key=lambda kv: -kv[1])) or "-"


def table(results: dict, phases: list[str]) -> str:
    rows = [("", "before", "after")]
    for phase in phases:
        rows.append((f"phase {phase}", "", ""))
        for kind in ("viewer_hls", "viewer_dvr"):
            cells = []
            for v in ("before", "after"):
                figures = results[v][phase][kind]
                cells.append(f"{figures['requests']} requests, {figures['failures']} failed"
                             + (f" ({counts(figures['failures_by_status'])})" if figures["failures"] else ""))
            rows.append((f"  {kind}", *cells))
            rows.append((f"  {kind} p50/p99/max ms", *("{p50_ms}/{p99_ms}/{max_ms}".format(**results[v][phase][kind])
                                                        for v in ("before", "after"))))
        rows.append(("  flood answers", *(counts(results[v][phase]["flood"]) for v in ("before", "after"))))
        for key in ("cant_start_new_thread_lines", "peak_threads", "refused_forks", "service_alive_after"):
            rows.append((f"  {key}", *(str(results[v][phase][key]) for v in ("before", "after"))))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="flood before the window (default 3)")
    parser.add_argument("--phases", default="quiet,socket,nginx", help="any of quiet, socket, nginx (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    if not phases or set(phases) - {"quiet", "socket", "nginx"} or not 1 <= args.seconds <= 120 or not 0 <= args.warmup <= 30:
        parser.error("--phases: quiet, socket and/or nginx; --seconds 1-120; --warmup 0-30")
    require_pids_cgroup()
    sources = {
        "before": subprocess.run(["git", "-C", str(REPO), "show", f"{BEFORE_COMMIT}:templates/{SERVICE}"],
                                 capture_output=True, check=True, timeout=30).stdout,
        "after": (TEMPLATES_DIR / SERVICE).read_bytes(),
    }
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            timeout=30).stdout.strip()
    # What the rendered tree and the "after" service came from besides the commit: edits not committed yet.
    uncommitted = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "templates", "pi_stream"],
                                 capture_output=True, text=True, timeout=30).stdout.split("\n")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="starve-dvr-") as directory, \
            fake_dvr([], "127.0.0.1", 0, 0, DVR_USER, DVR_PASSWORD, Path(directory)) as dvr:
        for label, source in sources.items():
            results[label] = variant(label, source, dvr, phases, args.seconds, args.warmup)
    report = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "commit": commit,
        "uncommitted_in_templates_and_pi_stream": [line.strip() for line in uncommitted if line.strip()],
        "before": f"{BEFORE_COMMIT}:templates/{SERVICE}",
        "after": f"working tree templates/{SERVICE}",
        "tasks_max": auth_tasks_max(),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "flood_connections": len(FLOOD_ADDRESSES) * CONNECTIONS_PER_ADDRESS,
        "results": results,
    }
    print(table(results, phases))
    print(f"machine: {report['machine']}; commit {commit}; load average during the run (1, 5, 15 min, before and "
          f"after each phase): " + "; ".join(f"{v}/{p} {results[v][p]['load_average_before_after']}"
                                            for v in results for p in phases))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
