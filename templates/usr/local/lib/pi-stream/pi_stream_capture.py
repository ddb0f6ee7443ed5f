#!/usr/bin/python3
"""pi-stream capture supervisor: one ffmpeg per camera, and never a reconnect storm.

Installed by pi-stream (copied verbatim; edit the project, not this file).
Standard library only: it runs on the Pi without the pi-stream package.

    pi_stream_capture.py serve [--config /etc/pi-stream/capture.json]
    pi_stream_capture.py clean [--config ...] [--today YYYY-MM-DD]

`serve` (pi-stream-capture.service) runs each camera's rendered ffmpeg argv:
one source session feeding live HLS (through nginx-rtmp), snapshots and
recording. Consumer NVRs allow only a few sessions, so it
  - gives each NVR's sessions to its highest-priority cameras, never more
    than `max_sessions`; the rest wait and say so;
  - starts cameras one NVR session at a time, `stagger_seconds` apart;
  - retries a failed camera after first*2^(n-1) seconds (capped, with jitter),
    keeps its session slot while it backs off (a waiting camera would only
    hit the same broken NVR), disables it after `disable_after_failures`
    and re-probes it every `reprobe_seconds`;
  - stops at once, without retrying, on what a retry cannot fix: a refused
    password (NVRs lock accounts after a few) or an H.265 source that
    browsers cannot play;
  - kills a camera whose picture stalls with the connection still up;
  - pulls on-demand cameras only while nginx reports someone watching.
Status goes to RUNTIME/status.json, RUNTIME/status/CAMERA.json and
RUNTIME/metrics.prom (Prometheus text format) every two seconds.

`clean` (pi-stream-retention.timer) deletes the dated directories of
snapshots and recordings older than each camera's keep_days, and nothing else.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "/etc/pi-stream/capture.json"
TICK_SECONDS = 0.5
STATUS_EVERY_SECONDS = 2.0
DISK_EVERY_SECONDS = 30.0
HEALTHY_SECONDS = 60.0  # a run this long after going live forgets earlier failures
STOP_GRACE_SECONDS = 5.0
DISK_RESUME_MARGIN = 2.0  # percent above min_free before writing resumes, so it does not flap
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FRAME_RE = re.compile(r"^(snap|thumb)-(\d{6,})\.jpg$")
INPUT_CODEC_RE = re.compile(r"Stream #0:\d+.*?: Video: ([A-Za-z0-9_]+)")
LEVEL_RE = re.compile(r"\[(error|fatal|panic)\]\s*(.*)$")
PREFIX_RE = re.compile(r"^(\[[^\]]+ @ 0x[0-9a-f]+\]\s*)+")
USERINFO_RE = re.compile(r"//[^/@\s]*@")


def redact(text: str) -> str:
    """ffmpeg prints URLs in errors; a URL's password must never reach a status page or log."""
    return USERINFO_RE.sub("//***@", text)


class Camera:
    """One camera's run state. The supervisor owns all transitions; see Supervisor.tick."""

    def __init__(self, spec: dict, index: int) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.index = index
        self.priority: int = spec["priority"]
        self.nvr: str | None = spec["nvr"]
        self.on_demand: bool = spec["on_demand"]
        self.state = "stopped"
        self.detail = "not started yet"
        self.since = time.time()
        self.proc: subprocess.Popen | None = None
        self.producer: subprocess.Popen | None = None
        self.slot = False  # holds one of its NVR's sessions (running, or backing off to run again)
        self.stopping = False  # we asked it to stop: its exit is not a failure
        self.kill_at = 0.0
        self.exit_reason = ""
        self.fatal = ""  # a failure a retry cannot fix
        self.started_at = 0.0
        self.live_since = 0.0
        self.last_progress_at = 0.0
        self.frame = 0
        self.fps: float | None = None
        self.bitrate_kbps: float | None = None
        self.codec: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.failures = 0
        self.disabled = False
        self.retry_at = 0.0
        self.sessions_opened = 0
        self.demand_until = 0.0
        self.recording_on = False
        self.latest_at: float | None = None
        self.stdout_buffer = b""
        self.stderr_buffer = b""
        self.progress: dict[str, str] = {}
        self.seen_input = False

    def set_state(self, state: str, detail: str, now: float) -> None:
        if state != self.state:
            self.since = now
        self.state, self.detail = state, detail

    def running_processes(self) -> list[subprocess.Popen]:
        return [p for p in (self.proc, self.producer) if p is not None and p.poll() is None]

    def wants_to_run(self, now: float) -> bool:
        if self.disabled and now < self.retry_at:
            return False
        return not self.on_demand or self.demand_until > now


class Supervisor:
    def __init__(self, config: dict, sources: dict[str, str], encoder_args: list[str], rng: random.Random | None = None) -> None:
        self.config = config
        self.schedule = config["schedule"]
        self.storage = config["storage"]
        self.sources = sources
        self.encoder_args = encoder_args
        self.rng = rng or random.Random()
        self.runtime = Path(config["runtime_dir"])
        self.cameras = [Camera(spec, i) for i, spec in enumerate(config["cameras"])]
        self.budgets = {n["name"]: n["max_sessions"] for n in config["nvrs"]}
        self.last_start: dict[str, float] = {}
        self.selector = selectors.DefaultSelector()
        self.last_status = 0.0
        self.last_disk = -DISK_EVERY_SECONDS
        self.disk: dict[str, dict] = {}
        self.writing = {"snapshots": True, "recordings": True}
        self.recording_block = ""
        self.demand_socket: socket.socket | None = None

    # ------------------------------------------------------------ processes

    def argv(self, camera: Camera) -> list[str]:
        spec = camera.spec
        url = self.sources.get(camera.name, spec["source_url"])
        parts = [*self.config["ffmpeg"], *spec["input"]]
        if spec["filter"]:
            parts += ["-filter_complex", spec["filter"]]
        parts += spec["live"] + spec["snapshots"]
        if camera.recording_on:
            parts += spec["recording"]
        argv: list[str] = []
        for part in parts:
            if part == "{encoder_args}":
                argv += self.encoder_args
            else:
                argv.append(url if part == "{source_url}" else part)
        return argv

    def start(self, camera: Camera, now: float) -> None:
        snapshots = self.runtime / "snapshots" / camera.name
        snapshots.mkdir(parents=True, exist_ok=True)
        for leftover in snapshots.iterdir():
            if FRAME_RE.fullmatch(leftover.name) or leftover.name.endswith(".tmp"):
                leftover.unlink(missing_ok=True)  # numbering restarts at 1 with every ffmpeg
        camera.recording_on = bool(camera.spec["recording"]) and self.recording_allowed()
        if camera.recording_on:
            self.make_date_dirs(camera, now)
        stdin = subprocess.DEVNULL
        if camera.spec["pipe_from"]:
            camera.producer = subprocess.Popen(camera.spec["pipe_from"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            stdin = camera.producer.stdout
        camera.codec, camera.fatal = None, ""
        try:
            camera.proc = subprocess.Popen(self.argv(camera), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            camera.last_error, camera.last_error_at = f"cannot run ffmpeg: {exc.strerror}", now
            if camera.producer is not None:
                camera.producer.kill()
                camera.producer.wait(timeout=5)
                camera.producer = None
            self.exited(camera, -1, now)
            return
        if camera.producer is not None:
            camera.producer.stdout.close()  # ffmpeg holds the read end now
        for stream in (camera.proc.stdout, camera.proc.stderr):
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ, camera)
        camera.sessions_opened += 1 if camera.spec["source_type"] == "rtsp" else 0
        camera.started_at = camera.last_progress_at = now
        camera.live_since = 0.0
        camera.frame, camera.fps, camera.bitrate_kbps = 0, None, None
        camera.stopping, camera.exit_reason, camera.seen_input = False, "", False
        camera.stdout_buffer = camera.stderr_buffer = b""
        camera.set_state("starting", "connecting to the source", now)
        if camera.nvr:
            self.last_start[camera.nvr] = now

    def stop(self, camera: Camera, now: float, reason: str) -> None:
        """Stop a run on purpose (budget, demand, shutdown): its exit is not a failure."""
        self.end_run(camera, now, reason, failed=False)

    def kill_failed(self, camera: Camera, now: float, reason: str) -> None:
        """End a run that went wrong; its exit then counts as a failure with this reason."""
        self.end_run(camera, now, reason, failed=True)

    def end_run(self, camera: Camera, now: float, reason: str, failed: bool) -> None:
        if camera.proc is None or camera.stopping:
            return
        camera.stopping, camera.exit_reason = not failed, reason
        camera.kill_at = now + STOP_GRACE_SECONDS
        for proc in camera.running_processes():
            proc.terminate()

    def read(self, camera: Camera, stream) -> None:
        try:
            data = stream.read()
        except (BlockingIOError, ValueError):
            return
        if not data:
            if self.registered(stream):
                self.selector.unregister(stream)
            return
        if stream is camera.proc.stdout:
            camera.stdout_buffer += data
            *lines, camera.stdout_buffer = camera.stdout_buffer.split(b"\n")
            for line in lines:
                self.progress_line(camera, line.decode("utf-8", "replace").strip())
        else:
            camera.stderr_buffer += data
            *lines, camera.stderr_buffer = camera.stderr_buffer.split(b"\n")
            for line in lines:
                self.stderr_line(camera, line.decode("utf-8", "replace").strip())
        camera.stdout_buffer, camera.stderr_buffer = camera.stdout_buffer[-4096:], camera.stderr_buffer[-4096:]

    def progress_line(self, camera: Camera, line: str) -> None:
        key, _, value = line.partition("=")
        if key != "progress":
            camera.progress[key] = value
            return
        now = time.time()
        frame = int(camera.progress.get("frame", "0") or 0)
        if frame > camera.frame:
            camera.frame, camera.last_progress_at = frame, now
            if camera.state == "starting":
                camera.live_since = now
                camera.disabled = False
                camera.set_state("live", "streaming", now)
        camera.fps = number(camera.progress.get("fps"))
        camera.bitrate_kbps = number(camera.progress.get("bitrate", "").removesuffix("kbits/s"))
        camera.progress = {}

    def stderr_line(self, camera: Camera, line: str) -> None:
        if line.startswith("[info] Input #0"):
            camera.seen_input = True
        codec = INPUT_CODEC_RE.search(line)
        if codec and camera.seen_input:
            camera.codec = codec.group(1)
            camera.seen_input = False  # the first video stream of the input is the one mapped
            if camera.codec == "hevc" and not camera.spec["transcode"] and camera.spec["source_type"] == "rtsp":
                camera.fatal = (
                    "the source sends H.265 (HEVC), which browsers do not play: switch the camera or NVR channel to H.264 "
                    "(often its sub-stream), or set `transcode: true` for this camera (re-encodes on the Pi, costly)"
                )
        error = LEVEL_RE.search(line)
        if error:
            message = redact(PREFIX_RE.sub("", error.group(2)).strip())
            if message:
                camera.last_error, camera.last_error_at = message, time.time()
            if "401" in message and "Unauthorized" in message:
                camera.fatal = (
                    "the source refused the user name or password (401): fix them in site.yml and deploy; "
                    "not retried sooner, because NVRs lock an account after a few wrong tries"
                )

    def reap(self, now: float) -> None:
        for camera in self.cameras:
            if camera.proc is None:
                continue
            if camera.fatal and not camera.exit_reason:
                self.kill_failed(camera, now, camera.fatal)
            if camera.proc.poll() is None:
                if camera.kill_at and now >= camera.kill_at:
                    for proc in camera.running_processes():
                        proc.kill()
                continue
            for stream in (camera.proc.stdout, camera.proc.stderr):
                self.read(camera, stream)
                if self.registered(stream):
                    self.selector.unregister(stream)
                stream.close()
            if camera.producer is not None:
                if camera.producer.poll() is None:
                    camera.producer.kill()
                camera.producer.wait(timeout=5)
                camera.producer = None
            returncode = camera.proc.returncode
            camera.proc, camera.kill_at = None, 0.0
            self.exited(camera, returncode, now)

    def registered(self, stream) -> bool:
        try:
            self.selector.get_key(stream)
            return True
        except (KeyError, ValueError):
            return False

    def exited(self, camera: Camera, returncode: int, now: float) -> None:
        if camera.stopping and not camera.fatal:
            camera.stopping = False
            camera.set_state("stopped", camera.exit_reason, now)
            return
        camera.stopping = False
        healthy = camera.live_since and now - camera.live_since >= HEALTHY_SECONDS
        camera.failures = 1 if healthy else camera.failures + 1
        reason = camera.fatal or camera.exit_reason or camera.last_error or f"ffmpeg exited with status {returncode}"
        camera.last_error, camera.last_error_at = reason, now
        schedule = self.schedule
        if camera.fatal or camera.failures >= schedule["disable_after_failures"]:
            camera.disabled, camera.slot = True, False
            camera.retry_at = now + schedule["reprobe_seconds"] * self.rng.uniform(0.8, 1.2)
            why = camera.fatal or f"{camera.failures} failures in a row; last: {reason}"
            camera.set_state("disabled", f"disabled: {why}; re-probed at {clock(camera.retry_at)}", now)
            camera.fatal = ""
            return
        delay = min(schedule["retry_max_seconds"], schedule["retry_first_seconds"] * 2 ** (camera.failures - 1))
        camera.retry_at = now + delay * self.rng.uniform(0.5, 1.0)
        camera.set_state("backing_off", f"failure {camera.failures}: {reason}; retrying at {clock(camera.retry_at)}", now)

    def check_runs(self, now: float) -> None:
        stall = self.schedule["stall_seconds"]
        for camera in self.cameras:
            if camera.proc is None or camera.stopping or camera.exit_reason:
                continue
            if now - camera.last_progress_at > stall:
                what = "no video" if camera.state == "live" else "no picture after connecting"
                self.kill_failed(camera, now, f"{what} for {stall} s (stalled)")
            elif camera.live_since and camera.failures and now - camera.live_since >= HEALTHY_SECONDS:
                camera.failures = 0
            if camera.recording_on and not self.recording_allowed():
                self.stop(camera, now, "restarting without recording: " + self.recording_block)
            elif camera.spec["recording"] and not camera.recording_on and self.recording_allowed():
                self.stop(camera, now, "restarting to resume recording")

    # ------------------------------------------------------------ scheduling

    def groups(self) -> list[tuple[str | None, int, list[Camera]]]:
        """Cameras that compete for sessions: one group per NVR; a camera without an NVR competes with nobody."""
        by_nvr: dict[str, list[Camera]] = collections.defaultdict(list)
        groups: list[tuple[str | None, int, list[Camera]]] = []
        for camera in self.cameras:
            if camera.nvr:
                by_nvr[camera.nvr].append(camera)
            else:
                groups.append((None, 1, [camera]))
        groups += [(nvr, self.budgets.get(nvr, 1), members) for nvr, members in by_nvr.items()]
        return groups

    def assign(self, now: float) -> None:
        for nvr, budget, members in self.groups():
            for camera in members:
                if camera.slot and not camera.wants_to_run(now):
                    camera.slot = False
            # Slots go to new cameras only while the NVR works (or nothing has failed yet): after an
            # outage disables the running cameras, the waiting ones would only add attempts.
            working = any(c.state == "live" for c in members) or not any(c.failures for c in members)
            ranked = sorted((c for c in members if c.wants_to_run(now) and not c.slot), key=lambda c: (-c.priority, c.index))
            for camera in ranked:
                holders = [c for c in members if c.slot]
                if len(holders) < budget and (working or camera.disabled):
                    camera.slot = True
                    continue
                if camera.disabled or not working:
                    continue  # a re-probe never pushes a working camera out
                weakest = min(holders, key=lambda c: (c.priority, -c.index), default=None)
                if weakest is not None and weakest.priority < camera.priority:
                    weakest.slot = False
                    camera.slot = True
            self.start_holders(nvr, budget, members, now)

    def start_holders(self, nvr: str | None, budget: int, members: list[Camera], now: float) -> None:
        in_use = sum(1 for c in members if c.proc is not None)
        for camera in sorted(members, key=lambda c: (-c.priority, c.index)):
            if not camera.slot:
                if camera.proc is not None:
                    reason = "nobody is watching" if camera.on_demand and camera.demand_until <= now else "preempted by a higher-priority camera"
                    self.stop(camera, now, reason)
                self.describe_idle(camera, nvr, budget, members, now)
                continue
            if camera.proc is not None or now < camera.retry_at:
                continue
            if nvr and now - self.last_start.get(nvr, -1e9) < self.schedule["stagger_seconds"]:
                camera.set_state("starting", "waiting for its turn: starts on one NVR are staggered", now)
                continue
            if nvr and in_use >= budget:
                continue  # a preempted camera is still stopping
            self.start(camera, now)
            in_use += 1

    def describe_idle(self, camera: Camera, nvr: str | None, budget: int, members: list[Camera], now: float) -> None:
        if camera.proc is not None:
            return
        if camera.disabled:
            if not camera.detail.startswith("disabled"):
                camera.set_state("disabled", f"disabled; re-probed at {clock(camera.retry_at)}", now)
            elif now >= camera.retry_at:
                camera.set_state("disabled", "disabled; re-probe waits for a free session on its NVR", now)
            return
        if camera.on_demand and camera.demand_until <= now:
            camera.set_state("idle", "on demand: starts when someone opens it", now)
            return
        used = sum(1 for c in members if c.slot)
        camera.set_state(
            "waiting",
            f"over the session budget of NVR {nvr}: {used} of {budget} sessions held by higher-priority cameras "
            f"(raise nvrs.{nvr}.max_sessions only if the NVR allows more)",
            now,
        )

    # ------------------------------------------------------------ snapshots, storage

    def harvest(self, now: float) -> None:
        for camera in self.cameras:
            directory = self.runtime / "snapshots" / camera.name
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            frames: dict[int, set[str]] = collections.defaultdict(set)
            for name in names:
                match = FRAME_RE.fullmatch(name)
                if match:
                    frames[int(match.group(2))].add(match.group(1))
            complete = sorted(n for n, kinds in frames.items() if kinds == {"snap", "thumb"})
            for number in complete:
                snap, thumb = directory / f"snap-{number:06d}.jpg", directory / f"thumb-{number:06d}.jpg"
                try:
                    taken = snap.stat().st_mtime
                    if camera.spec["snapshot_dir"] and self.writing["snapshots"]:
                        self.file_snapshot(camera, snap, thumb, taken)
                    if number == complete[-1]:
                        os.replace(snap, directory / "latest.jpg")
                        os.replace(thumb, directory / "latest.thumb.jpg")
                        camera.latest_at = taken
                    else:
                        snap.unlink()
                        thumb.unlink()
                except OSError as exc:
                    camera.last_error, camera.last_error_at = f"snapshot: {exc.strerror}: {exc.filename}", now

    def file_snapshot(self, camera: Camera, snap: Path, thumb: Path, taken: float) -> None:
        moment = time.localtime(taken)
        day = Path(camera.spec["snapshot_dir"]) / time.strftime("%Y-%m-%d", moment)
        day.mkdir(parents=True, exist_ok=True)
        stem = time.strftime("%H%M%S", moment)
        for source, target in ((snap, day / f"{stem}.jpg"), (thumb, day / f"{stem}.thumb.jpg")):
            partial = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, partial)
            os.replace(partial, target)

    def make_date_dirs(self, camera: Camera, now: float) -> None:
        """The segment muxer names files by date but does not create directories: today's and tomorrow's exist ahead."""
        base = Path(camera.spec["recording_dir"])
        for offset in (0, 86400):
            (base / time.strftime("%Y-%m-%d", time.localtime(now + offset))).mkdir(parents=True, exist_ok=True)

    def recording_allowed(self) -> bool:
        return self.writing["recordings"] and not self.recording_block

    def check_disk(self, now: float) -> None:
        if now - self.last_disk < DISK_EVERY_SECONDS:
            return
        self.last_disk = now
        minimum = self.storage["min_free_percent"]
        for kind, key in (("snapshots", "snapshots_path"), ("recordings", "recordings_path")):
            path = self.storage[key]
            if not path or not os.path.isdir(path):
                continue
            usage = shutil.disk_usage(path)
            free = 100.0 * usage.free / usage.total if usage.total else 0.0
            was = self.writing[kind]
            self.writing[kind] = free >= minimum + (0 if was else DISK_RESUME_MARGIN)
            self.disk[kind] = {"path": path, "free_percent": round(free, 1), "writing": self.writing[kind]}
        path = self.storage["recordings_path"]
        self.recording_block = ""
        if path and not os.path.isdir(path):
            self.recording_block = f"{path} does not exist"
        elif path and not self.storage["recordings_on_root_fs"] and os.stat(path).st_dev == os.stat("/").st_dev:
            self.recording_block = (
                f"storage.recordings_path {path} is on the root file system (the SD card): mount a disk there, "
                "or set storage.recordings_on_root_fs: true"
            )
        elif not self.writing["recordings"]:
            self.recording_block = f"disk below storage.min_free_percent ({minimum}%)"
        for camera in self.cameras:
            if camera.recording_on:
                self.make_date_dirs(camera, now)

    # ------------------------------------------------------------ on demand

    def open_demand_socket(self) -> None:
        """nginx logs each playlist request of an on-demand camera here (syslog over a unix datagram socket)."""
        if not any(c.on_demand for c in self.cameras):
            return
        path = self.runtime / "demand.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # nginx's workers run as another user; the message is only a camera name
        sock.setblocking(False)
        self.demand_socket = sock
        self.selector.register(sock, selectors.EVENT_READ, None)

    def read_demand(self, now: float) -> None:
        by_name = {c.name: c for c in self.cameras if c.on_demand}
        while True:
            try:
                message = self.demand_socket.recv(512).decode("ascii", "replace")
            except BlockingIOError:
                return
            camera = by_name.get(message.rsplit(" ", 1)[-1].strip())
            if camera is not None:
                camera.demand_until = now + self.schedule["on_demand_idle_seconds"]

    # ------------------------------------------------------------ status

    def sessions_in_use(self, nvr: str) -> int:
        return sum(1 for c in self.cameras if c.nvr == nvr and c.proc is not None)

    def camera_status(self, camera: Camera, now: float) -> dict:
        spec = camera.spec
        nvr = None
        if camera.nvr:
            nvr = {"name": camera.nvr, "sessions_in_use": self.sessions_in_use(camera.nvr), "max_sessions": self.budgets.get(camera.nvr, 1)}
        recording = {"enabled": bool(spec["recording"]), "writing": camera.recording_on and camera.state == "live", "detail": ""}
        if spec["recording"] and not camera.recording_on:
            recording["detail"] = self.recording_block or "starts with the camera"
        snapshot_disk = self.disk.get("snapshots", {})
        return {
            "camera": camera.name,
            "title": spec["title"],
            "state": camera.state,
            "detail": camera.detail,
            "since": round(camera.since, 1),
            "codec": camera.codec,
            "fps": camera.fps if camera.state == "live" else None,
            "bitrate_kbps": camera.bitrate_kbps if camera.state == "live" else None,
            "last_error": camera.last_error,
            "last_error_at": round(camera.last_error_at, 1) if camera.last_error_at else None,
            "retry_at": round(camera.retry_at, 1) if camera.state in ("backing_off", "disabled") else None,
            "failures": camera.failures,
            "sessions_opened": camera.sessions_opened,
            "priority": camera.priority,
            "on_demand": camera.on_demand,
            "nvr": nvr,
            "snapshots": {
                "interval_seconds": spec["snapshot_interval_seconds"],
                "latest_at": round(camera.latest_at, 1) if camera.latest_at else None,
                "writing": bool(spec["snapshot_dir"]) and self.writing["snapshots"],
                "detail": ""
                if self.writing["snapshots"] or not spec["snapshot_dir"]
                else f"paused: disk below {self.storage['min_free_percent']}% free",
            },
            "recording": recording,
            "disk": snapshot_disk or None,
            "updated": round(now, 1),
        }

    def write_status(self, now: float) -> None:
        cameras = [self.camera_status(c, now) for c in self.cameras]
        nvrs = [
            {
                "name": name,
                "max_sessions": budget,
                "sessions_in_use": self.sessions_in_use(name),
                "waiting": [c.name for c in self.cameras if c.nvr == name and c.state == "waiting"],
            }
            for name, budget in self.budgets.items()
        ]
        status_dir = self.runtime / "status"
        status_dir.mkdir(exist_ok=True)
        for entry in cameras:
            write_atomic(status_dir / f"{entry['camera']}.json", json.dumps(entry, indent=1) + "\n")
        document = {"site": self.config["site"], "updated": round(now, 1), "cameras": cameras, "nvrs": nvrs, "disk": self.disk}
        write_atomic(self.runtime / "status.json", json.dumps(document, indent=1) + "\n")
        write_atomic(self.runtime / "metrics.prom", metrics(cameras, nvrs, self.disk))

    # ------------------------------------------------------------ main loop

    def tick(self, now: float) -> None:
        if self.demand_socket is not None:
            self.read_demand(now)
        self.reap(now)
        self.check_disk(now)
        self.check_runs(now)
        self.assign(now)
        self.harvest(now)
        if now - self.last_status >= STATUS_EVERY_SECONDS:
            self.last_status = now
            self.write_status(now)

    def run(self, stop_requested) -> None:
        self.open_demand_socket()
        while not stop_requested():
            for key, _ in self.selector.select(timeout=TICK_SECONDS):
                if key.data is not None and key.data.proc is not None:
                    self.read(key.data, key.fileobj)
            self.tick(time.time())
        self.shutdown()

    def shutdown(self) -> None:
        now = time.time()
        for camera in self.cameras:
            camera.slot = False
            self.stop(camera, now, "the supervisor stopped")
        deadline = now + STOP_GRACE_SECONDS + 1
        while any(c.proc is not None for c in self.cameras) and time.time() < deadline + STOP_GRACE_SECONDS:
            time.sleep(0.1)
            self.reap(time.time())
        self.write_status(time.time())


def number(text: str | None) -> float | None:
    try:
        return round(float(text), 1) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


STATES = ("live", "starting", "backing_off", "disabled", "waiting", "idle", "stopped")


def metrics(cameras: list[dict], nvrs: list[dict], disk: dict) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[dict, float | None]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            lines.append(f"{name}{{{label_text}}} {value:g}")

    family(
        "pi_stream_camera_up",
        "gauge",
        "1 while the camera streams live.",
        [({"camera": c["camera"]}, float(c["state"] == "live")) for c in cameras],
    )
    family(
        "pi_stream_camera_state",
        "gauge",
        "1 for the state the camera is in.",
        [({"camera": c["camera"], "state": s}, float(c["state"] == s)) for c in cameras for s in STATES],
    )
    family("pi_stream_camera_fps", "gauge", "Frames per second received.", [({"camera": c["camera"]}, c["fps"]) for c in cameras])
    family(
        "pi_stream_camera_bitrate_kbps",
        "gauge",
        "Bitrate of the live stream in kbit/s.",
        [({"camera": c["camera"]}, c["bitrate_kbps"]) for c in cameras],
    )
    family(
        "pi_stream_camera_failures",
        "gauge",
        "Consecutive failed runs.",
        [({"camera": c["camera"]}, float(c["failures"])) for c in cameras],
    )
    family(
        "pi_stream_camera_sessions_opened_total",
        "counter",
        "RTSP sessions opened to the source since the supervisor started.",
        [({"camera": c["camera"]}, float(c["sessions_opened"])) for c in cameras],
    )
    family(
        "pi_stream_camera_snapshot_timestamp_seconds",
        "gauge",
        "When the latest snapshot was taken (Unix time).",
        [({"camera": c["camera"]}, c["snapshots"]["latest_at"]) for c in cameras],
    )
    family(
        "pi_stream_nvr_sessions_in_use",
        "gauge",
        "RTSP sessions open to the NVR.",
        [({"nvr": n["name"]}, float(n["sessions_in_use"])) for n in nvrs],
    )
    family(
        "pi_stream_nvr_sessions_max",
        "gauge",
        "The NVR's session budget (site.yml).",
        [({"nvr": n["name"]}, float(n["max_sessions"])) for n in nvrs],
    )
    family(
        "pi_stream_nvr_cameras_waiting",
        "gauge",
        "Cameras not started because the session budget is used.",
        [({"nvr": n["name"]}, float(len(n["waiting"]))) for n in nvrs],
    )
    family(
        "pi_stream_disk_free_percent",
        "gauge",
        "Free space where snapshots or recordings are written.",
        [({"kind": kind, "path": d["path"]}, d["free_percent"]) for kind, d in disk.items()],
    )
    family(
        "pi_stream_disk_writing",
        "gauge",
        "1 while snapshots or recordings are written (0: paused, disk short).",
        [({"kind": kind}, float(d["writing"])) for kind, d in disk.items()],
    )
    return "\n".join(lines) + "\n"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------- retention


def clean(config: dict, today: datetime.date, log=print) -> list[Path]:
    """Delete dated directories older than each camera's keep_days. Only YYYY-MM-DD directories directly
    under a camera's own directory are candidates: nothing else is ever touched."""
    removed: list[Path] = []
    failed: list[str] = []
    for camera in config["cameras"]:
        for key, keep_key in (("snapshot_dir", "snapshot_keep_days"), ("recording_dir", "recording_keep_days")):
            base, keep_days = camera[key], camera[keep_key]
            if not base or keep_days <= 0 or not os.path.isdir(base):
                continue
            cutoff = today - datetime.timedelta(days=keep_days)
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if not DATE_RE.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    day = datetime.date.fromisoformat(entry.name)
                except ValueError:
                    continue
                if day < cutoff:
                    try:
                        shutil.rmtree(entry.path)
                    except OSError as exc:  # one stubborn directory must not keep the others
                        failed.append(entry.path)
                        log(f"cannot remove {entry.path}: {exc.strerror}: {exc.filename}")
                        continue
                    removed.append(Path(entry.path))
                    log(f"removed {entry.path} (older than {keep_days} days)")
    if failed:
        raise CleanError(f"{len(failed)} directories could not be removed")
    return removed


class CleanError(Exception):
    pass


# ---------------------------------------------------------------- entry points


def load_sources() -> dict[str, str]:
    """Per camera, its URL with credentials, from the systemd credential (root-only file on disk)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return {}
    path = Path(directory) / "sources"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_encoder_args(path: str) -> list[str]:
    """PI_STREAM_ENCODER_ARGS from the camera_capture role's encoder probe."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ["-c:v", "libx264"]
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PI_STREAM_ENCODER_ARGS":
            return shlex.split(value)
    return ["-c:v", "libx264"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("serve", "clean"))
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--today", type=datetime.date.fromisoformat, default=None, help="clean: the date to count from")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    if args.command == "clean":
        try:
            clean(config, args.today or datetime.date.today())
        except CleanError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    supervisor = Supervisor(config, load_sources(), load_encoder_args(config["encoder_env"]))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    supervisor.run(lambda: bool(stopping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
