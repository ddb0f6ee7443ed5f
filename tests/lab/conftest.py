"""What every lab module uses: a lab of its own (booted_lab) and ssh into its hosts.

Set PI_STREAM_KEEP_LAB=1 to leave a lab up for debugging (`pi-stream lab ssh --name NAME`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.identity_provider import MockProvider, SigningKeys, Tls, access_claims, local_session


@contextlib.contextmanager
def booted_lab(name: str, hosts: int, suite: str = "bookworm"):
    """A lab of its own for a test module; down afterwards unless PI_STREAM_KEEP_LAB=1."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, systemd-nspawn); deselect them with -m 'not lab'")
    from pi_stream import lab

    state = lab.up(name, hosts=hosts, suite=suite, progress=print)
    try:
        yield state
    finally:
        if os.environ.get("PI_STREAM_KEEP_LAB") != "1":
            lab.down(name)


@contextlib.contextmanager
def controller_cache(directory: Path):
    """PI_STREAM_CACHE set to `directory` for the block: a module whose first deploy must really download and build."""
    saved = os.environ.get("PI_STREAM_CACHE")
    os.environ["PI_STREAM_CACHE"] = str(directory)
    try:
        yield directory
    finally:
        if saved is None:
            os.environ.pop("PI_STREAM_CACHE", None)
        else:
            os.environ["PI_STREAM_CACHE"] = saved


@contextlib.contextmanager
def nvr_beside(lab_state, directory: Path, channels: int, max_sessions: int, username: str, password: str, **options):
    """The fake NVR in a namespace of its own on the lab bridge (its address as `.address`), stopped afterwards."""
    from pi_stream import lab
    from pi_stream.lab.nvr import fake_nvr

    with lab.client_namespace(lab_state, "nvr") as host, fake_nvr(
        host.exec_prefix, host.address, 554, channels, max_sessions, username, password, [], directory, **options
    ) as server:
        server.address = host.address
        yield server


def ssh(lab_state, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from pi_stream import lab

    return subprocess.run(
        lab.ssh_argv(lab_state, host, *command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False
    )


REPO = Path(__file__).resolve().parents[2]


def run_in(client, *argv: str, input: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    """argv run inside a client namespace of a lab (a viewer's), from the repository; a non-zero exit raises.
    The child gets a stdin of its own, an empty pipe at least (pi_stream/proc.py says why)."""
    return subprocess.run([*client.exec_prefix, *argv], input=input, capture_output=True, text=True, timeout=timeout, check=True,
                          cwd=REPO)


IDP_PORT = 9400
IDP_READY_SECONDS = 60


@dataclass
class LabIdentityProvider:
    """tests/identity_provider.py running in a lab's client namespace: its issuer URL, its test CA, and the key the
    tests sign Cloudflare-style assertions with (published at /cdn-cgi/access/certs through DIR/jwks.json)."""

    address: str
    url: str  # the issuer: https://ADDR:PORT
    directory: Path
    ca_file: Path
    keys: SigningKeys
    mock: MockProvider  # oidc-provider-mock's user API and login form, from this process

    @property
    def team_domain(self) -> str:
        return self.url.removeprefix("https://")

    def assertion(self, email: str, keys: SigningKeys | None = None, **claims) -> str:
        """A Cf-Access-Jwt-Assertion for `email`, valid for five minutes, signed with the published key unless `keys`."""
        return (keys or self.keys).sign(access_claims(self.url, email=email, **claims))


@contextlib.contextmanager
def identity_provider_beside(lab_state, directory: Path, name: str = "idp"):
    """The identity provider (oidc-provider-mock over TLS, and Cloudflare Access's key path) in a client namespace of
    its own on the lab bridge, where the lab's hosts reach it: started, waited for (DIR/ready, bounded), stopped."""
    from pi_stream import lab

    keys = SigningKeys.rsa(f"{lab_state.name}-access-key")
    (directory / "jwks.json").write_text(json.dumps({"keys": [keys.jwk()]}), encoding="utf-8")
    errors = directory / "stderr.log"
    with lab.client_namespace(lab_state, name) as client, errors.open("w") as stderr:
        process = subprocess.Popen(
            [*client.exec_prefix, sys.executable, "-m", "tests.identity_provider", "--address", client.address,
             "--port", str(IDP_PORT), "--directory", str(directory)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        try:
            deadline = time.monotonic() + IDP_READY_SECONDS
            while not (directory / "ready").exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the identity provider did not start (exit {process.poll()}): "
                                f"{errors.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            # The hosts dial the provider, never the other way round. On a lab kept between runs (PI_STREAM_KEEP_LAB=1)
            # a host may still hold this address's ARP entry from an earlier run's namespace, with another MAC: its first
            # connection then waits out a failed unicast probe, longer than the login service's 10 s timeout (seen: a
            # 502 "cannot be reached"). A ping from here to each host hands it the current MAC with the ARP request (a
            # ping: the hosts' firewalls let ICMP in and no service logs it, so no jail counts it).
            for host in lab_state.hosts:
                subprocess.run([*client.exec_prefix, "ping", "-c", "1", "-W", "5", host.address], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30, check=True)
            url = (directory / "ready").read_text(encoding="utf-8").strip()
            ca_file = directory / "identity-ca.pem"
            yield LabIdentityProvider(client.address, url, directory, ca_file, keys, MockProvider(url, None, local_session(Tls(ca_file, None))))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class Viewer:
    """tests/lab/remote_viewer.py (Chromium on the player page) running in its namespace, and what the tests ask of it."""

    process: subprocess.Popen
    address: str
    in_namespace: Callable[..., subprocess.CompletedProcess]
    stderr: Path  # the viewer's own errors (Python's, chromedriver's): quoted when it stops answering

    def line(self, seconds: float, ask: str | None = None) -> dict:
        """The viewer's next JSON line (after sending `ask`), within `seconds`."""
        if ask:
            assert self.process.poll() is None, self.exited()
            self.process.stdin.write(ask + "\n")
            self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        assert ready, f"the viewer said nothing in {seconds} s; its stderr ends: {self.stderr_tail()}"
        line = self.process.stdout.readline()
        assert line, self.exited()
        return json.loads(line)

    def exited(self) -> str:
        return f"the viewer exited ({self.process.poll()}); its stderr ends: {self.stderr_tail()}"

    def stderr_tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:] or "(nothing)"


@contextlib.contextmanager
def remote_browser(client, url: str, user: str, password: str, camera: str, transport: str = "webrtc"):
    """Chromium logged in at `url` inside the client's namespace, watching `camera`; quit (or killed) afterwards."""
    stderr = Path(tempfile.mkstemp(prefix="remote-viewer-", suffix=".log")[1])
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [*client.exec_prefix, sys.executable, "-m", "tests.lab.remote_viewer", url, user, password, camera, transport],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
        )
    try:
        yield Viewer(process, client.address, functools.partial(run_in, client), stderr)
    finally:
        if process.poll() is None:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=10)
        stderr.unlink(missing_ok=True)
