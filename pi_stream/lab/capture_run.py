"""The capture supervisor run off the Pi against the fake NVR: shared by tests/capture and bench/nvr.

A site is rendered the way a Pi gets it (paths moved under a temporary root),
with one change: the live FLV goes to /dev/null, because nginx-rtmp is not
running here (the lab runs the whole appliance). The supervisor runs under
Debian's Python, as on the Pi, in a session of its own so that nothing it
started can outlive `stop()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pi_stream import credentials, share
from pi_stream.capture import source_credentials
from pi_stream.render import paths_under, render_site
from pi_stream.site import load_site

SCRIPT = share.TEMPLATES / "usr/local/lib/pi-stream/pi_stream_capture.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the supervisor's Python on the Pi: stdlib only
HOST = "pi1"
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class RenderedCapture:
    config_path: Path
    credentials: Path  # CREDENTIALS_DIRECTORY for the supervisor: holds `sources`
    runtime: Path
    config: dict


def render_capture(directory: Path, site: dict) -> RenderedCapture:
    """Write `site` (site.yml content) as a one-Pi site under `directory` and render its capture settings."""
    site_dir = directory / "site"
    site_dir.mkdir(parents=True)
    (site_dir / "site.yml").write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    inventory = {"all": {"hosts": {HOST: {"ansible_host": "192.0.2.10"}}}}
    (site_dir / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    credentials.add_user(site_dir, "viewer", credentials.generate_password())  # a site needs one
    loaded = load_site(site_dir)
    bundle = render_site(loaded, paths_under(directory / "root"))[HOST]
    config = json.loads(bundle["etc/pi-stream/capture.json"].content)
    for camera in config["cameras"]:
        if camera["live"][-2:] != ["flv", f"rtmp://127.0.0.1:1935/live/{camera['name']}"]:
            raise RuntimeError(f"capture.json's live output changed shape: {camera['live']}")
        camera["live"][-1] = "/dev/null"
    config_path = directory / "capture.json"
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    secrets = directory / "credentials"
    secrets.mkdir(mode=0o700)
    (secrets / "sources").write_text(json.dumps(source_credentials(loaded, HOST)), encoding="utf-8")
    runtime = Path(config["runtime_dir"])
    runtime.mkdir(parents=True)
    return RenderedCapture(config_path, secrets, runtime, config)


class SupervisorProcess:
    """`pi_stream_capture.py serve` with a rendered config; stop() always leaves nothing running."""

    def __init__(self, rendered: RenderedCapture, log: Path) -> None:
        self.rendered, self.log = rendered, log
        self.process: subprocess.Popen | None = None

    def start(self) -> SupervisorProcess:
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(self.rendered.credentials)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, str(SCRIPT), "serve", "--config", str(self.rendered.config_path)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def check(self) -> None:
        """Raise with the log's tail if the supervisor died."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the supervisor exited with status {self.process.returncode}; its log:\n{tail}")

    def stop(self) -> float | None:
        """SIGTERM (it stops its ffmpegs), a bounded wait, then SIGKILL of the whole group.

        Returns the seconds a clean stop took, None if it had to be killed (or never ran)."""
        if self.process is None:
            return None
        began, took = time.monotonic(), None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                    took = time.monotonic() - began
                except subprocess.TimeoutExpired:
                    kill_group(self.process)
                    self.process.wait(timeout=10)
        finally:
            kill_group(self.process)  # an ffmpeg left behind would keep an NVR session
            self.process = None
        return took

    def status(self) -> dict:
        try:
            return json.loads((self.rendered.runtime / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def cameras(self) -> dict[str, dict]:
        return {c["camera"]: c for c in self.status().get("cameras", [])}

    def states(self) -> dict[str, str]:
        return {name: camera["state"] for name, camera in self.cameras().items()}


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
