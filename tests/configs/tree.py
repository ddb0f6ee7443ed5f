"""A rendered site installed under a temporary root, the way the roles install it on a Pi."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from requests.adapters import HTTPAdapter

from pi_stream.render import TEMPLATES_DIR, BundleFile, paths_under, render_site
from pi_stream.site import load_site
from pi_stream.verify import Http
from tests.conftest import wait_until


# The one rule for moving a rendered tree under a temporary root lives with the renderer.
rooted_paths = paths_under

# What the roles create on the Pi before nginx starts (dvr_proxy: the cache root).
APPLIANCE_DIRS = ("var/log/nginx", "var/log/pi-stream", "var/lib/nginx", "run", "var/cache/pi-stream/dvr")


def install_bundle(root: Path, files: Mapping[str, BundleFile]) -> None:
    """One host's rendered files, written under `root` at their targets."""
    for target, file in files.items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)


def install_tree(make_site, example: str, root: Path, host: str = "", **overrides) -> Path:
    """An example site (site.yml keys replaced by `overrides`) rendered, and one host's files (the first by name,
    unless `host` says) installed under `root`."""
    site = load_site(make_site(example, **overrides))
    bundle = render_site(site, rooted_paths(root))
    install_bundle(root, bundle[host or sorted(bundle)[0]])
    return site.directory


def auth_tool_argv(root: Path, *args: str) -> list[str]:
    """The installed pi_stream_auth.py, pointed at the tree's access.json, viewers and site key."""
    auth = root / "etc/pi-stream/auth"
    return ["/usr/bin/python3", str(root / "usr/local/lib/pi-stream/pi_stream_auth.py"), "--config", str(auth / "access.json"),
            "--viewers", str(auth / "viewers"), "--key", str(auth / "token.key"), *args]


def load_auth_module(script: Path, monkeypatch: pytest.MonkeyPatch):
    """pi_stream_auth.py imported into this process, so a test can hold its bcrypt queue in a known state."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("pi_stream_auth", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pi_stream_auth", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def install_auth_secrets(site_dir: Path, root: Path) -> None:
    """What the viewer_auth role does on the host: viewers file, site key, and nginx's token keys from the real tool."""
    auth = root / "etc/pi-stream/auth"
    shutil.copy(site_dir / "viewers.htpasswd", auth / "viewers")
    (auth / "token.key").write_text(secrets.token_hex(32) + "\n")
    keys = subprocess.run(auth_tool_argv(root, "nginx-map"), capture_output=True, text=True, timeout=30, check=True)
    (auth / "nginx-token-keys.conf").write_text(keys.stdout)


def make_certificate(root: Path) -> None:
    (root / "etc/pi-stream/tls").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(root / "etc/pi-stream/tls/key.pem"),
         "-out", str(root / "etc/pi-stream/tls/cert.pem")],
        check=True, capture_output=True, timeout=30,
    )


def runnable_nginx_conf(root: Path) -> Path:
    """The installed nginx.conf, made to run here: workers as root (pytest's temporary directory is private
    to root) and no RTMP (nothing publishes off the Pi). Returns its path."""
    conf = root / "etc/nginx/nginx.conf"
    text = conf.read_text().replace("user www-data;", "user root;")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("include") or "rtmp.conf" not in line)
    conf.write_text(text + "\n")
    return conf


def prepare_rooted_appliance(site_dir: Path, root: Path, host: str = "pi1") -> Path:
    """The site rendered for `host` and installed under `root` as the roles would (directories, viewer secrets,
    a self-signed certificate for 127.0.0.1), nginx.conf made runnable here. Returns the site's directory."""
    install_bundle(root, render_site(load_site(site_dir), rooted_paths(root))[host])
    runnable_nginx_conf(root)
    for sub in APPLIANCE_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    install_auth_secrets(site_dir, root)
    make_certificate(root)
    return site_dir


def port_open(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((address, port)) == 0


class RootedAppliance:
    """nginx + pi_stream_auth.py from one tree installed by prepare_rooted_appliance."""

    def __init__(self, root: Path, site_dir: Path) -> None:
        self.root, self.site_dir = root, site_dir
        self.auth = root / "etc/pi-stream/auth"
        self.script = root / "usr/local/lib/pi-stream/pi_stream_auth.py"
        self.socket = root / "run/pi-stream-auth.sock"
        self.auth_log = root / "var/log/pi-stream/auth.log"
        self.access_log = root / "var/log/nginx/access.log"
        self.certificate = root / "etc/pi-stream/tls/cert.pem"
        self.service: subprocess.Popen | None = None

    def tool(self, *args: str) -> str:
        return subprocess.run(auth_tool_argv(self.root, *args), capture_output=True, text=True, timeout=30, check=True).stdout

    def start_service(self) -> None:
        self.stop_service()
        self.service = subprocess.Popen(auth_tool_argv(self.root, "serve", "--listen", str(self.socket)))
        wait_until(lambda: self.socket.exists(), "the login service's socket", seconds=10, interval=0.05)

    def stop_service(self) -> None:
        if self.service:
            self.service.terminate()
            self.service.wait(timeout=10)
            self.service = None
        self.socket.unlink(missing_ok=True)

    def nginx(self, *args: str) -> None:
        subprocess.run(["nginx", "-c", str(self.root / "etc/nginx/nginx.conf"), *args], check=True, capture_output=True, timeout=30)


def need_free_ports(*ports: int) -> None:
    if shutil.which("nginx") is None:
        pytest.fail("nginx not installed: run scripts/install.sh")
    taken = [port for port in ports if port_open(port)]
    if taken:
        pytest.fail(f"port(s) {taken} taken on this machine")


@contextlib.contextmanager
def running(appliance: RootedAppliance, https_port: int) -> Iterator[RootedAppliance]:
    """The login service and nginx started, nginx answering on `https_port`; both stopped on the way out, whatever happened."""
    try:
        appliance.start_service()
        appliance.nginx()
        wait_until(lambda: port_open(https_port), "nginx", seconds=10, interval=0.05)
        yield appliance
    finally:
        subprocess.run(["nginx", "-c", str(appliance.root / "etc/nginx/nginx.conf"), "-s", "stop"], capture_output=True, timeout=30)
        appliance.stop_service()


def loopback_session(source: str, verify: str | bool) -> Http:
    """A session sending from a given loopback address (its own per-address limits)."""

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (source, 0)
            super().init_poolmanager(*args, **kwargs)

    # verify's Http keeps the pinned certificate even when REQUESTS_CA_BUNDLE is set (it is on CI).
    session = Http()
    session.mount("https://", SourceAdapter())
    session.verify = verify
    return session


# The login service's limits on the Pi, reproduced here: systemd's TasksMax through a cgroup v1 pids group.
AUTH_UNIT = TEMPLATES_DIR / "etc/systemd/system/pi-stream-auth.service.j2"
PIDS_CGROUP_ROOT = Path("/sys/fs/cgroup/pids")


def auth_tasks_max() -> int:
    """The login service unit's TasksMax, read from the template the Pi gets."""
    return int(re.search(r"^TasksMax=(\d+)$", AUTH_UNIT.read_text(), re.MULTILINE).group(1))


@contextlib.contextmanager
def pids_cgroup(label: str) -> Iterator[Path]:
    """A pids cgroup limited to the unit's TasksMax; whatever is left in it is killed on the way out (bounded: 10 s)."""
    if not (PIDS_CGROUP_ROOT / "cgroup.procs").exists():
        raise RuntimeError(f"no cgroup v1 pids controller at {PIDS_CGROUP_ROOT}: it stands in for systemd's TasksMax")
    cgroup = PIDS_CGROUP_ROOT / f"pi-stream-{label}-{os.getpid()}-{secrets.token_hex(3)}"
    cgroup.mkdir()
    try:
        (cgroup / "pids.max").write_text(f"{auth_tasks_max()}\n")
        yield cgroup
    finally:
        for _ in range(100):
            pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        cgroup.rmdir()


def in_cgroup_argv(cgroup: Path, argv: list[str]) -> list[str]:
    """argv run inside `cgroup` from its first instruction, as systemd starts a unit (before Python makes a thread)."""
    return ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", str(cgroup / "cgroup.procs"), *argv]


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the login service's unix socket, as nginx talks to it."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)
