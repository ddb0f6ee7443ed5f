"""RTSP connection attempts per camera: the capture supervisor against the hand-made baseline, in one run.

Consumer NVRs allow a few RTSP sessions and some lock up or ban clients that
reconnect too often. Everything here runs on this machine over loopback: one
fake NVR (pi_stream/lab/nvr.py, digest auth, 320x180 at 10 fps, 1 s GOP) and
the supervisor script from templates/ with the capture.json `pi-stream render` makes
for a bench site (the live FLV goes to /dev/null instead of nginx-rtmp, as in
tests/capture/test_supervisor_run.py). Attempts are counted by the NVR: one
per TCP client it accepted or refused, per channel (one channel per camera).

  steady     N cameras, a snapshot every 3 s (site.yml `snapshots: {interval_seconds: 3}`), for a window.
             baseline    per camera, a fresh `ffmpeg -rtsp_transport tcp -i URL -frames:v 1 -y out.jpg`
                         started every 3 s (start to start; the next waits for the previous one)
             supervisor  pi_stream_capture.py serve; the window starts once every camera is live
             Per camera: connections in the window and per hour (extrapolated from the window; the
             supervisor's figure adds its one connection at start), snapshots produced in the window,
             the longest gap between two, and CPU seconds (ffmpeg + supervisor; the NVR's apart).
  outage     the supervisor from `steady`, still running: the NVR drops every client and refuses
             everyone for --outage seconds (`nvr.outage`); observed until every camera is live again
             in RUNTIME/status.json (bounded). Attempts per camera during the outage and up to its
             recovery, against the bound the backoff schedule allows (computed from the rendered
             schedule: first retry, doubling, cap, jitter 0.5-1.0). The baseline is the hand-made
             restart loop `while true; ffmpeg -rtsp_transport tcp -i URL -c copy -f null -; sleep 1`
             per camera, through a second outage of the same length once the supervisor has stopped.
  overbudget 16 cameras on the NVR limited to 8 sessions, site max_sessions 16 (a wrong budget): the
             8 refused cameras' attempts under backoff (measured over the window, and per hour from
             the schedule) against the restart loop's (measured, extrapolated per hour).
             --no-overbudget leaves it out.

Usage (after scripts/install.sh; no lab, no nginx):
  .venv/bin/python bench/nvr/run.py [--cameras 4] [--window 120] [--outage 60] [--quick] [--json out.json]
The default run takes about 10 minutes, --quick about 5. Take figures when nothing else runs here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pi_stream.lab.capture_run import SYSTEM_PYTHON, RenderedCapture, SupervisorProcess, kill_group, render_capture  # noqa: E402
from pi_stream.lab.nvr import FakeNvr, fake_nvr  # noqa: E402

from bench.report import publish  # noqa: E402

FFMPEG = "ffmpeg"
SITE = "bench"
NVR_NAME = "shed"
NVR_USER, NVR_PASSWORD = "admin", "bench nvr p@ss"
INTERVAL = 3  # seconds between snapshots, both ways
OVERBUDGET_CAMERAS, OVERBUDGET_NVR_LIMIT = 16, 8
RESTART_PAUSE = 1.0  # the hand-made restart loop's `sleep 1`
# Bounds on every wait (seconds).
LIVE_TIMEOUT = 60  # all cameras live after the supervisor starts (plus stagger x cameras)
RECOVERY_TIMEOUT = 360  # all cameras live again after an outage began
BASELINE_RECOVERY_TIMEOUT = 30
SNAPSHOT_RUN_TIMEOUT = 20  # one baseline snapshot ffmpeg
POLL = 0.05


# ---------------------------------------------------------------- the backoff schedule, on paper


def retry_delay(schedule: dict, failures: int, jitter: float, reprobe_factor: float) -> float:
    """The wait after the `failures`-th failure in a row (Supervisor.exited)."""
    if failures >= schedule["disable_after_failures"]:
        return schedule["reprobe_seconds"] * reprobe_factor
    return min(schedule["retry_max_seconds"], schedule["retry_first_seconds"] * 2 ** (failures - 1)) * jitter


def retry_times(schedule: dict, failures: int, horizon: float, jitter: float, reprobe_factor: float) -> list[float]:
    """When a camera that keeps failing tries again, counted from a failure at t=0 that made `failures` failures
    in a row, with every random factor fixed (jitter in [0.5, 1], reprobe_factor in [0.8, 1.2]): the supervisor's
    Supervisor.exited without its stagger, tick and the time an attempt takes (which only delay attempts)."""
    times, now = [], 0.0
    while len(times) < 10_000:
        now += retry_delay(schedule, failures, jitter, reprobe_factor)
        if now > horizon:
            break
        times.append(now)
        failures += 1
    return times


def outage_bounds(schedule: dict, outage: float, cameras: int) -> dict:
    """A live camera dropped by an outage of `outage` s (its failure 1 at t=0): its attempts until the outage ends,
    and when its first attempt after the end comes at the latest."""
    most = retry_times(schedule, 1, outage, 0.5, 0.8)  # the shortest waits give the most attempts
    fewest = retry_times(schedule, 1, outage, 1.0, 1.2)
    earliest = [0.0, *retry_times(schedule, 1, outage, 0.5, 0.8)]  # earliest time of failure k+1
    latest_at = [0.0, *retry_times(schedule, 1, 1e12, 1.0, 1.2)[: len(earliest)]]  # latest time of failure k+1
    # Failure k can fall at any moment in [earliest, latest] before the end; the longest wait follows it.
    recovery = max(min(latest_at[k], outage) + retry_delay(schedule, k + 1, 1.0, 1.2) for k in range(len(earliest)))
    return {
        "attempts_during_outage_max": len(most),
        "attempts_during_outage_min": len(fewest),
        "attempts_until_recovery_max": len(most) + 1,
        "retry_times_shortest_s": [round(t, 1) for t in most],
        "recovery_latest_s": round(recovery + (cameras - 1) * schedule["stagger_seconds"], 1),
        "note": "jitter 0.5 gives the most attempts; the recovery bound adds stagger_seconds for each other camera on the NVR",
    }


def refused_camera_bounds(schedule: dict, window: float) -> dict:
    """A camera that is refused at every attempt: attempts in a window and in its first hour (its first attempt at 0)."""
    return {
        "attempts_in_window_max": 1 + len(retry_times(schedule, 1, window, 0.5, 0.8)),
        "attempts_first_hour_max": 1 + len(retry_times(schedule, 1, 3600, 0.5, 0.8)),
        "attempts_first_hour_min": 1 + len(retry_times(schedule, 1, 3600, 1.0, 1.2)),
        "attempts_per_hour_later_max": round(3600 / (schedule["reprobe_seconds"] * 0.8), 2),
    }


# ---------------------------------------------------------------- a rendered site


def camera_name(channel: int) -> str:
    return f"cam{channel:02d}"


@dataclass(frozen=True)
class Rendered:
    """The shared rendering (pi_stream.lab.capture_run) plus where this bench's snapshots land."""

    capture: RenderedCapture
    storage: Path

    @property
    def schedule(self) -> dict:
        return self.capture.config["schedule"]

    @property
    def config(self) -> dict:
        return self.capture.config

    def snapshot_dir(self, camera: str) -> Path:
        return self.storage / SITE / camera


def render(directory: Path, nvr: FakeNvr, cameras: int, max_sessions: int) -> Rendered:
    """A site with `cameras` RTSP cameras on channels 1..cameras of the fake NVR, rendered the way a Pi gets it."""
    storage = directory / "storage"
    site = {
        "name": SITE,
        "nvrs": {
            NVR_NAME: {
                "host": "127.0.0.1", "port": nvr.port, "username": NVR_USER, "password": NVR_PASSWORD,
                "path_template": "/ip{channel}/0", "max_sessions": max_sessions,
            }
        },
        "storage": {"snapshots_path": str(storage)},
        "cameras": [
            {"name": camera_name(n), "source": {"type": "rtsp", "nvr": NVR_NAME, "channel": n}, "snapshots": {"interval_seconds": INTERVAL}}
            for n in range(1, cameras + 1)
        ],
    }  # fmt: skip
    return Rendered(render_capture(directory, site), storage)


# ---------------------------------------------------------------- processes and CPU


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, children: bool) -> float:
    """utime + stime of a live process (+ its waited-for children's, with children=True)."""
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """A process, its exited children (waited for), and its live children: the supervisor and its ffmpegs."""
    total = cpu_seconds(pid, children=True)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                total += cpu_seconds(int(entry.name), children=True)
    return total


def children_cpu_seconds() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def wait_for(condition: Callable[[], bool], seconds: float, what: str, check: Callable[[], None] | None = None) -> float:
    """Poll until condition() holds; the seconds it took, or TimeoutError naming `what`."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if check:
            check()
        if condition():
            return time.monotonic() - began
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {seconds:g} s waiting for {what}")


class Supervisor(SupervisorProcess):
    """The shared supervisor process, plus what this bench measures of it."""

    def __init__(self, rendered: Rendered, log: Path) -> None:
        super().__init__(rendered.capture, log)

    def all_live(self, since: float = 0.0) -> bool:
        """Every camera live, and (with `since`) went live after that moment."""
        cameras = self.cameras()
        names = [c["name"] for c in self.rendered.config["cameras"]]
        return bool(cameras) and all(n in cameras and cameras[n]["state"] == "live" and cameras[n]["since"] >= since for n in names)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process else 0.0


@dataclass
class Run:
    started: float
    output: Path | None
    process: subprocess.Popen
    ended: float | None = None
    returncode: int | None = None


@dataclass
class Loop:
    """One camera's hand-made loop."""

    camera: str
    argv: Callable[[int], tuple[list[str], Path | None]]
    next_at: float
    runs: list[Run] = field(default_factory=list)

    @property
    def current(self) -> Run | None:
        return self.runs[-1] if self.runs and self.runs[-1].ended is None else None


class Loops:
    """The hand-made baselines, one loop per camera, all driven from here (no shell, every run bounded).

    mode "rate":    a run starts every `period` s (start to start); a late run starts when the previous ends.
    mode "restart": the next run starts `period` s after the previous one ended (`while true; ...; sleep 1`).
    No run starts after `until`; step() reaps and starts, stop() kills what still runs."""

    def __init__(self, mode: str, period: float, run_timeout: float | None) -> None:
        self.mode = mode
        self.period = period
        self.run_timeout = run_timeout
        self.loops: list[Loop] = []

    def add(self, camera: str, argv: Callable[[int], tuple[list[str], Path | None]], first_at: float) -> None:
        self.loops.append(Loop(camera, argv, first_at))

    def step(self, until: float) -> None:
        now = time.time()
        for loop in self.loops:
            run = loop.current
            if run is not None:
                if run.process.poll() is None:
                    if self.run_timeout and now - run.started > self.run_timeout:
                        kill_group(run.process)
                    continue
                run.ended, run.returncode = now, run.process.returncode
                if self.mode == "restart":
                    loop.next_at = now + self.period
            if now >= loop.next_at and now < until:
                argv, output = loop.argv(len(loop.runs))
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )
                loop.runs.append(Run(now, output, process))
                if self.mode == "rate":
                    loop.next_at = max(loop.next_at + self.period, now)

    def drive(self, until: float, also: Callable[[], None] | None = None) -> None:
        while time.time() < until:
            self.step(until)
            if also:
                also()
            time.sleep(POLL)

    def finish(self, grace: float) -> None:
        """Let the runs in progress end (up to `grace` s), then kill the rest."""
        deadline = time.time() + grace
        while any(loop.current for loop in self.loops) and time.time() < deadline:
            self.step(0)
            time.sleep(POLL)
        self.stop()

    def stop(self) -> None:
        for loop in self.loops:
            run = loop.current
            if run is None:
                continue
            if run.process.poll() is None:
                kill_group(run.process, signal.SIGTERM)
                try:
                    run.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    kill_group(run.process)
                    run.process.wait(timeout=5)
            kill_group(run.process)
            run.ended, run.returncode = time.time(), run.process.returncode


def snapshot_argv(url: str, output: Path) -> list[str]:
    """The hand-made snapshot: a fresh RTSP session per frame."""
    return [FFMPEG, "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-frames:v", "1", "-y", str(output)]


def stream_argv(url: str) -> list[str]:
    """The hand-made stream, run by `while true; ffmpeg ...; sleep 1`."""
    return [FFMPEG, "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-c", "copy", "-an", "-f", "null", "-"]


# ---------------------------------------------------------------- counting


def attempts_by_channel(nvr: FakeNvr, since: float, until: float | None = None) -> tuple[dict[int, list], int]:
    """NVR events (one per TCP client) per channel in [since, until]; and how many named no channel."""
    stats = nvr.stats(since=since)
    if stats.events_lost:
        raise RuntimeError(f"the fake NVR dropped {stats.events_lost} events (it keeps 10,000): shorten the window")
    by_channel: dict[int, list] = {}
    unattributed = 0
    for event in stats.events:
        if until is not None and event.time > until:
            continue
        if event.channel is None:
            unattributed += 1
        else:
            by_channel.setdefault(event.channel, []).append(event)
    return by_channel, unattributed


def jpeg(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"\xff\xd8"
    except OSError:
        return False


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    points = [start, *sorted(times), end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def filed_snapshots(directory: Path) -> list[float]:
    """When each snapshot in SITE/CAMERA/DATE/HHMMSS.jpg was taken (local time, to the second)."""
    taken = []
    for path in directory.glob("*/[0-9][0-9][0-9][0-9][0-9][0-9].jpg"):
        if not jpeg(path):
            continue
        moment = datetime.datetime.strptime(f"{path.parent.name} {path.stem}", "%Y-%m-%d %H%M%S")
        taken.append(moment.timestamp())
    return taken


def mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 2) if values else 0.0


def summary(values: Sequence[float]) -> dict:
    return {"mean": mean(values), "min": min(values, default=0), "max": max(values, default=0)}


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} bench/nvr: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the phases


def steady_baseline(nvr: FakeNvr, cameras: int, window: float, workdir: Path) -> dict:
    out = workdir / "baseline-snapshots"
    out.mkdir()
    nvr.reset()
    loops = Loops("rate", INTERVAL, SNAPSHOT_RUN_TIMEOUT)
    begin = time.time() + 0.5
    for channel in range(1, cameras + 1):
        url = nvr.url(channel, username=NVR_USER, password=NVR_PASSWORD)
        name = camera_name(channel)

        def argv(k: int, url: str = url, name: str = name) -> tuple[list[str], Path]:
            output = out / f"{name}-{k:05d}.jpg"
            return snapshot_argv(url, output), output

        loops.add(name, argv, begin + (channel - 1) * INTERVAL / cameras)  # spread like separate cron jobs
    cpu_before, nvr_cpu_before = children_cpu_seconds(), cpu_seconds(nvr.ref.pid, False)
    end = begin + window
    try:
        loops.drive(end)
        loops.finish(SNAPSHOT_RUN_TIMEOUT)
    finally:
        loops.stop()
    cpu, nvr_cpu = children_cpu_seconds() - cpu_before, cpu_seconds(nvr.ref.pid, False) - nvr_cpu_before
    by_channel, unattributed = attempts_by_channel(nvr, begin - 0.5, end)
    per_camera = []
    for channel, loop in enumerate(loops.loops, start=1):
        made = [r.ended for r in loop.runs if r.returncode == 0 and r.output and jpeg(r.output)]
        connections = len(by_channel.get(channel, []))
        per_camera.append({
            "camera": loop.camera,
            "connections_in_window": connections,
            "refused": sum(1 for e in by_channel.get(channel, []) if e.outcome == "refused"),
            "runs": len(loop.runs),
            "failed_runs": sum(1 for r in loop.runs if r.returncode != 0),
            "snapshots": len(made),
            "longest_gap_s": round(longest_gap(made, begin, end), 1),
            "run_seconds_median": round(statistics.median([r.ended - r.started for r in loop.runs if r.ended]), 2) if loop.runs else None,
        })  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    return {
        "window_s": window,
        "per_camera": per_camera,
        "unattributed_connections": unattributed,
        "connections_per_camera_per_hour": round(mean([c["connections_in_window"] for c in per_camera]) * 3600 / window),
        "snapshots_per_camera": summary([c["snapshots"] for c in per_camera]),
        "cpu_seconds_per_camera_minute": round(cpu / cameras / window * 60, 2),
        "nvr_cpu_seconds_per_minute": round(nvr_cpu / window * 60, 2),
    }


def steady_supervisor(nvr: FakeNvr, supervisor: Supervisor, rendered: Rendered, cameras: int, window: float) -> dict:
    nvr.reset()
    started = time.time()
    supervisor.start()
    startup = wait_for(supervisor.all_live, LIVE_TIMEOUT + cameras * rendered.schedule["stagger_seconds"], "every camera live", supervisor.check)
    begin = time.time()
    opened_before = {name: c["sessions_opened"] for name, c in supervisor.cameras().items()}
    cpu_before, nvr_cpu_before = supervisor.cpu_seconds(), cpu_seconds(nvr.ref.pid, False)
    end = begin + window
    while time.time() < end:
        supervisor.check()
        time.sleep(0.5)
    cpu, nvr_cpu = supervisor.cpu_seconds() - cpu_before, cpu_seconds(nvr.ref.pid, False) - nvr_cpu_before
    status = supervisor.cameras()
    before, _ = attempts_by_channel(nvr, started, begin)
    during, unattributed = attempts_by_channel(nvr, begin, end)
    per_camera = []
    for channel in range(1, cameras + 1):
        name = camera_name(channel)
        # Filed to the second: the window's first and last second count whole.
        taken = [t for t in filed_snapshots(rendered.snapshot_dir(name)) if begin - 1 < t < end]
        per_camera.append({
            "camera": name,
            "connections_at_start": len(before.get(channel, [])),
            "connections_in_window": len(during.get(channel, [])),
            "sessions_opened_in_window": status[name]["sessions_opened"] - opened_before.get(name, 0),
            "state_at_end": status[name]["state"],
            "snapshots": len(taken),
            "longest_gap_s": round(longest_gap(taken, begin, end), 1),
        })  # fmt: skip
    reconnects = mean([c["connections_in_window"] for c in per_camera])
    return {
        "window_s": window,
        "all_live_after_s": round(startup, 1),
        "per_camera": per_camera,
        "unattributed_connections": unattributed,
        # One connection when it starts, then what the window shows, extrapolated.
        "connections_per_camera_per_hour": round(1 + reconnects * 3600 / window, 1),
        "snapshots_per_camera": summary([c["snapshots"] for c in per_camera]),
        "cpu_seconds_per_camera_minute": round(cpu / cameras / window * 60, 2),
        "nvr_cpu_seconds_per_minute": round(nvr_cpu / window * 60, 2),
    }


def outage_supervisor(nvr: FakeNvr, supervisor: Supervisor, rendered: Rendered, cameras: int, outage: float) -> dict:
    nvr.reset()
    began = time.time()
    dropped = nvr.outage(outage)
    ended = began + outage
    states_seen: dict[str, set[str]] = {}

    def all_back() -> bool:
        for name, camera in supervisor.cameras().items():
            states_seen.setdefault(name, set()).add(camera["state"])
        return time.time() > ended and supervisor.all_live(since=ended)

    recovered = None
    with contextlib.suppress(TimeoutError):
        recovered = wait_for(all_back, RECOVERY_TIMEOUT, "every camera live after the outage", supervisor.check)
    time.sleep(2)  # a camera that went live and failed at once would show up here
    status = supervisor.cameras()
    events, unattributed = attempts_by_channel(nvr, began)
    per_camera = []
    for channel in range(1, cameras + 1):
        name = camera_name(channel)
        back_at = status[name]["since"] if status[name]["state"] == "live" and status[name]["since"] >= ended else None
        mine = events.get(channel, [])
        per_camera.append({
            "camera": name,
            "attempts_during_outage": sum(1 for e in mine if e.time <= ended),
            "attempts_until_recovery": sum(1 for e in mine if back_at is None or e.time <= back_at),
            "attempts_after_recovery": sum(1 for e in mine if back_at is not None and e.time > back_at),
            "refused": sum(1 for e in mine if e.outcome == "refused"),
            "recovered_after_s": round(back_at - began, 1) if back_at else None,
            "states_seen": sorted(states_seen.get(name, ())),
            "failures_at_end": status[name]["failures"],
        })  # fmt: skip
    return {
        "outage_s": outage,
        "dropped_sessions": dropped,
        "per_camera": per_camera,
        "unattributed_connections": unattributed,
        "attempts_during_outage_per_camera": summary([c["attempts_during_outage"] for c in per_camera]),
        "attempts_until_recovery_per_camera": summary([c["attempts_until_recovery"] for c in per_camera]),
        "all_recovered_after_s": round(recovered, 1) if recovered is not None else None,
        "recovery_timeout_s": RECOVERY_TIMEOUT,
    }


def outage_baseline(nvr: FakeNvr, cameras: int, outage: float) -> dict:
    loops = Loops("restart", RESTART_PAUSE, None)
    now = time.time()
    for channel in range(1, cameras + 1):
        url = nvr.url(channel, username=NVR_USER, password=NVR_PASSWORD)
        loops.add(camera_name(channel), lambda _k, url=url: (stream_argv(url), None), now + 0.2 * channel)

    def all_open() -> bool:
        stats = nvr.stats(since=time.time())
        return all(stats.channels[n].open >= 1 for n in range(1, cameras + 1))

    try:
        settle = time.time() + 30
        while not all_open():
            if time.time() > settle:
                raise TimeoutError("the baseline's ffmpegs did not all connect within 30 s")
            loops.drive(time.time() + 0.5)
        loops.drive(time.time() + 3)
        nvr.reset()
        began = time.time()
        nvr.outage(outage)
        ended = began + outage
        loops.drive(ended + 0.1)
        recovered = None
        deadline = ended + BASELINE_RECOVERY_TIMEOUT
        while time.time() < deadline:
            loops.drive(time.time() + 0.25)
            if all_open():
                recovered = time.time() - began
                break
        events, unattributed = attempts_by_channel(nvr, began)
    finally:
        loops.stop()
    per_camera = []
    for channel in range(1, cameras + 1):
        mine = events.get(channel, [])
        accepted = [e.time for e in mine if e.outcome == "accepted" and e.time > ended]
        per_camera.append({
            "camera": camera_name(channel),
            "attempts_during_outage": sum(1 for e in mine if e.time <= ended),
            "attempts_until_recovery": sum(1 for e in mine if not accepted or e.time <= accepted[0]),
            "recovered_after_s": round(accepted[0] - began, 1) if accepted else None,
        })  # fmt: skip
    during = [c["attempts_during_outage"] for c in per_camera]
    return {
        "outage_s": outage,
        "per_camera": per_camera,
        "unattributed_connections": unattributed,
        "attempts_during_outage_per_camera": summary(during),
        "attempts_per_camera_per_outage_minute": round(mean(during) * 60 / outage, 1),
        "all_recovered_after_s": round(recovered, 1) if recovered is not None else None,
    }


def overbudget(nvr: FakeNvr, workdir: Path, window: float, loop_window: float) -> dict:
    """16 cameras, NVR limit 8, site budget 16: first the restart loop, then the supervisor."""
    cameras = OVERBUDGET_CAMERAS
    nvr.set_limit(OVERBUDGET_NVR_LIMIT)
    result: dict = {"cameras": cameras, "nvr_limit": OVERBUDGET_NVR_LIMIT, "site_max_sessions": cameras}

    # The restart loop: whoever connects first streams; the others are refused every ~1 s.
    nvr.reset()
    loops = Loops("restart", RESTART_PAUSE, None)
    now = time.time()
    for channel in range(1, cameras + 1):
        url = nvr.url(channel, username=NVR_USER, password=NVR_PASSWORD)
        loops.add(camera_name(channel), lambda _k, url=url: (stream_argv(url), None), now + 0.1 * channel)
    try:
        loops.drive(now + 5)
        begin = time.time()
        loops.drive(begin + loop_window)
        events, _ = attempts_by_channel(nvr, begin)
        stats = nvr.stats(since=time.time())
    finally:
        loops.stop()
    refused = [n for n in range(1, cameras + 1) if stats.channels[n].open == 0]
    counts = [len(events.get(n, [])) for n in refused]
    result["restart_loop"] = {
        "window_s": loop_window,
        "refused_cameras": len(refused),
        "attempts_per_refused_camera_in_window": summary(counts),
        "attempts_per_refused_camera_per_hour": round(mean(counts) * 3600 / loop_window),
        "attempts_by_streaming_cameras_in_window": sum(len(events.get(n, [])) for n in range(1, cameras + 1) if n not in refused),
        "refused_attempts_all_cameras_per_minute": round(sum(counts) * 60 / loop_window, 1),
    }
    wait_for(lambda: nvr.stats(since=time.time()).total.open == 0, 30, "the NVR to close the restart loops' sessions")

    # The supervisor with the wrong budget.
    nvr.reset()
    rendered = render(workdir / "overbudget", nvr, cameras, max_sessions=cameras)
    supervisor = Supervisor(rendered, workdir / "overbudget" / "supervisor.log")
    begin = time.time()
    try:
        supervisor.start()
        end = begin + window
        while time.time() < end:
            supervisor.check()
            time.sleep(0.5)
        status = supervisor.cameras()
        events, _ = attempts_by_channel(nvr, begin)
    finally:
        took = supervisor.stop()
    per_camera = []
    for channel in range(1, cameras + 1):
        name = camera_name(channel)
        mine = events.get(channel, [])
        first = mine[0].time - begin if mine else None
        per_camera.append({
            "camera": name,
            "state_at_end": status[name]["state"],
            "attempts": len(mine),
            "accepted": sum(1 for e in mine if e.outcome == "accepted"),
            "first_attempt_s": round(first, 1) if first is not None else None,
            "bound": refused_camera_bounds(rendered.schedule, window - first)["attempts_in_window_max"] if first is not None else None,
            "sessions_opened": status[name]["sessions_opened"],
            "detail": status[name]["detail"],
        })  # fmt: skip
    refused_cameras = [c for c in per_camera if c["attempts"] and not c["accepted"]]
    refused_attempts = sum(c["attempts"] for c in refused_cameras)
    result["supervisor"] = {
        "window_s": window,
        "live_at_end": sum(1 for c in per_camera if c["state_at_end"] == "live"),
        "refused_cameras": len(refused_cameras),
        "never_tried": [c["camera"] for c in per_camera if not c["attempts"]],
        "attempts_per_refused_camera_in_window": summary([c["attempts"] for c in refused_cameras]),
        "refused_cameras_within_bound": all(c["attempts"] <= c["bound"] for c in refused_cameras),
        # What the NVR saw from all of them together (the stagger, one start per stagger_seconds, caps it).
        "refused_attempts_all_cameras_per_minute": round(refused_attempts * 60 / window, 1),
        "schedule_bounds": refused_camera_bounds(rendered.schedule, window),
        "per_camera": per_camera,
        "stop_seconds": round(took, 1) if took is not None else None,
    }
    return result


# ---------------------------------------------------------------- main


def check_tools() -> None:
    probe = [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"]
    if subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
        raise SystemExit("gst-rtsp-server's Python bindings are missing (the fake NVR needs them): run scripts/install.sh")
    if shutil.which(FFMPEG) is None:
        raise SystemExit("ffmpeg is missing: run scripts/install.sh")


def run(args: argparse.Namespace, workdir: Path) -> dict:
    cameras, window, outage = args.cameras, args.window, args.outage
    channels = max(cameras, OVERBUDGET_CAMERAS if args.overbudget else 0)
    # The NVR allows twice the cameras: the baseline's next snapshot may connect before the NVR saw the last one close.
    with fake_nvr([], "127.0.0.1", 0, channels, 2 * cameras, NVR_USER, NVR_PASSWORD, [], workdir / "nvr") as nvr:
        rendered = render(workdir / "steady", nvr, cameras, max_sessions=cameras)
        schedule = rendered.schedule
        figures: dict = {
            "commit": git_commit(),
            "settings": {
                "cameras": cameras, "window_s": window, "snapshot_interval_s": INTERVAL, "outage_s": outage,
                "nvr_max_sessions": 2 * cameras, "site_max_sessions": cameras, "schedule": schedule,
                "source": "fake NVR on loopback, H.264 320x180 at 10 fps, 1 s GOP, digest auth",
            },
        }  # fmt: skip
        say(f"steady state, baseline: {cameras} snapshot loops for {window:g} s")
        baseline = steady_baseline(nvr, cameras, window, workdir)
        say(f"steady state, supervisor: {cameras} cameras for {window:g} s once all are live")
        supervisor = Supervisor(rendered, workdir / "steady" / "supervisor.log")
        try:
            steady = steady_supervisor(nvr, supervisor, rendered, cameras, window)
            say(f"outage of {outage:g} s with the supervisor running, then until every camera is live again")
            outage_result = outage_supervisor(nvr, supervisor, rendered, cameras, outage)
        finally:
            took = supervisor.stop()
        outage_result["supervisor_stop_seconds"] = round(took, 1) if took is not None else None
        time.sleep(3)
        say(f"outage of {outage:g} s with the restart loops")
        outage_loop = outage_baseline(nvr, cameras, outage)
        figures["steady"] = {
            "baseline": baseline,
            "supervisor": steady,
            "ratio_baseline_over_supervisor": round(baseline["connections_per_camera_per_hour"] / steady["connections_per_camera_per_hour"]),
            "note": "per hour = extrapolated from the window; the supervisor's adds its one connection at start",
        }
        bounds = outage_bounds(schedule, outage, cameras)
        figures["outage"] = {
            "schedule_bound": bounds,
            "supervisor": outage_result,
            "within_bound": outage_result["attempts_until_recovery_per_camera"]["max"] <= bounds["attempts_until_recovery_max"],
            "baseline_restart_loop": outage_loop,
        }
        if args.overbudget:
            time.sleep(3)
            say(f"over budget: {OVERBUDGET_CAMERAS} cameras, NVR limit {OVERBUDGET_NVR_LIMIT}, site max_sessions {OVERBUDGET_CAMERAS}")
            figures["overbudget"] = overbudget(nvr, workdir, args.overbudget_window, args.overbudget_loop_window)
    return figures


def git_commit() -> str | None:
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or None


def print_summary(figures: dict) -> None:
    steady, outage = figures["steady"], figures["outage"]
    lines = [
        "",
        "| | baseline | supervisor |",
        "|---|---|---|",
        f"| steady: connections per camera per hour (extrapolated from {steady['baseline']['window_s']:g} s) | "
        f"{steady['baseline']['connections_per_camera_per_hour']:,} | {steady['supervisor']['connections_per_camera_per_hour']:g} |",
        f"| steady: snapshots per camera in the window (mean) | {steady['baseline']['snapshots_per_camera']['mean']:g} | "
        f"{steady['supervisor']['snapshots_per_camera']['mean']:g} |",
        f"| steady: CPU s per camera per minute | {steady['baseline']['cpu_seconds_per_camera_minute']:g} | "
        f"{steady['supervisor']['cpu_seconds_per_camera_minute']:g} |",
        f"| outage {outage['supervisor']['outage_s']:g} s: attempts per camera during it (max) | "
        f"{outage['baseline_restart_loop']['attempts_during_outage_per_camera']['max']} | "
        f"{outage['supervisor']['attempts_during_outage_per_camera']['max']} (bound {outage['schedule_bound']['attempts_during_outage_max']}) |",
        f"| outage: all cameras back after | {outage['baseline_restart_loop']['all_recovered_after_s']} s | "
        f"{outage['supervisor']['all_recovered_after_s']} s (bound {outage['schedule_bound']['recovery_latest_s']} s) |",
    ]
    if "overbudget" in figures:
        over = figures["overbudget"]
        lines.append(
            f"| over budget: attempts per refused camera per hour | {over['restart_loop']['attempts_per_refused_camera_per_hour']:,} | "
            f"<= {over['supervisor']['schedule_bounds']['attempts_first_hour_max']} (schedule; "
            f"{over['supervisor']['attempts_per_refused_camera_in_window']['max']} in the first {over['supervisor']['window_s']:g} s) |"
        )
    print("\n".join(lines), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=4, help="cameras on the NVR, 1-16 (default 4; the machine has 2 cores)")
    parser.add_argument("--window", type=float, help="steady-state window in seconds (default 120, --quick 40)")
    parser.add_argument("--outage", type=float, help="outage length in seconds (default 60, --quick 30)")
    parser.add_argument("--quick", action="store_true", help="shorter windows: about 5 minutes in all")
    parser.add_argument("--no-overbudget", dest="overbudget", action="store_false", help="leave out 16 cameras on an 8-session NVR")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, rendered config, snapshots)")
    args = parser.parse_args()
    if not 1 <= args.cameras <= 16:
        parser.error("--cameras: 1 to 16")
    args.window = args.window or (40 if args.quick else 120)
    args.outage = args.outage or (30 if args.quick else 60)
    args.overbudget_window = 60 if args.quick else 80
    args.overbudget_loop_window = 15 if args.quick else 20
    if not (10 <= args.window <= 3600 and 5 <= args.outage <= 600):
        parser.error("--window: 10 to 3600 s; --outage: 5 to 600 s")
    check_tools()
    # SIGTERM unwinds like Ctrl-C, so every finally below stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="pi-stream-bench-nvr-"))
    began = time.monotonic()
    try:
        figures = run(args, workdir)
    finally:
        if args.keep:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["wall_seconds"] = round(time.monotonic() - began)
    publish(figures, args.json)
    print_summary(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
