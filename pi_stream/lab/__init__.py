"""The lab: simulated Pis on one Linux machine.

Each host is a Debian root (debootstrap, cached per suite and architecture)
booted by systemd-nspawn with systemd as PID 1, in its own network namespace,
attached to a bridge private to the lab. The host side of the bridge runs a
caching apt proxy (an nginx instance of the lab's own) because containers
cannot reach the mirror themselves. Root only, Linux only.

Facts this module is built on (checked on the Debian 12 machines this project
runs on; see ../shared/DESIGN.md):
- PID 1 on the controller may not be systemd: nspawn is started and stopped as
  a plain child process (new session, PID in the state file), not via systemd-run.
- `--register=no` is needed (no system bus on the host).
- nftables inside a container needs CAP_NET_ADMIN (fail2ban bans use it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from pi_stream.errors import CommandError, LabError
from pi_stream.proc import require_tools, run

LABS_DIR = Path(os.environ.get("PI_STREAM_LAB_DIR", "/var/lib/pi-stream/labs"))
CACHE_DIR = Path(os.environ.get("PI_STREAM_CACHE_DIR", "/var/cache/pi-stream"))
MIRROR_HOST = "deb.debian.org"
PROXY_PORT = 3142
SUBNET_PREFIX = "10.213"  # 10.213.<k>.0/24 per lab; only ever on this machine's bridges
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
SUITES = ("bookworm", "trixie")
ARCHES = ("amd64", "arm64")
ROOTFS_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,sudo,ca-certificates"
BOOT_TIMEOUT_SECONDS = 90
ARM64_BOOT_TIMEOUT_SECONDS = 600  # systemd under qemu-user emulation boots slowly
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    machine: str
    root: Path
    namespace: str
    ssh_user: str = "root"
    ssh_port: int = 22


@dataclass(frozen=True)
class Client:
    """An extra network namespace on the lab bridge: a stranger on the Pi's network."""

    address: str
    namespace: str

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


@dataclass(frozen=True)
class Lab:
    name: str
    suite: str
    arch: str
    hosts: tuple[LabHost, ...]
    host_address: str
    subnet: str
    bridge: str
    key_path: Path
    known_hosts_path: Path
    apt_proxy_url: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return LABS_DIR / self.name

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"lab {self.name} has no host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def write_inventory(self, path: Path, extra_vars: dict | None = None) -> None:
        """An Ansible YAML inventory for the lab hosts, with the lab's key and exact known_hosts."""
        ssh_args = (
            f"-o UserKnownHostsFile={self.known_hosts_path} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        )
        hosts = {
            host.name: {
                "ansible_host": host.address,
                "ansible_user": host.ssh_user,
                "ansible_port": host.ssh_port,
                "ansible_ssh_private_key_file": str(self.key_path),
                "ansible_ssh_common_args": ssh_args,
            }
            for host in self.hosts
        }
        inventory: dict = {"all": {"hosts": hosts}}
        if extra_vars:
            inventory["all"]["vars"] = extra_vars
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# Written by pi-stream for lab {self.name!r}; rewritten at every `lab up`/demo.\n"
            + yaml.safe_dump(inventory, sort_keys=False),
            encoding="utf-8",
        )


# ---------------------------------------------------------------- names and state


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(f"lab name {name!r}: use 1-16 characters, lowercase letters, digits and '-', starting with a letter")


def short_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:6]


def interface_names(name: str) -> tuple[str, str]:
    """Bridge and veth prefix; Linux allows 15 characters per interface name."""
    digest = short_hash(name)
    return f"psb{digest}", f"psv{digest}"


def state_path(name: str) -> Path:
    return LABS_DIR / name / "state.json"


def save_state(lab: Lab) -> None:
    path = state_path(lab.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(lab)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def load_state(name: str) -> Lab | None:
    path = state_path(name)
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    hosts = tuple(LabHost(**{**h, "root": Path(h["root"])}) for h in data.pop("hosts"))
    return Lab(
        **{
            **data,
            "hosts": hosts,
            "key_path": Path(data["key_path"]),
            "known_hosts_path": Path(data["known_hosts_path"]),
        }
    )


def list_labs() -> list[str]:
    if not LABS_DIR.exists():
        return []
    return sorted(p.name for p in LABS_DIR.iterdir() if (p / "state.json").exists())


def allocate_subnet(taken: set[int]) -> int:
    for index in range(1, 255):
        if index not in taken:
            return index
    raise LabError("no free lab subnet left in 10.213.0.0/16: take some labs down")


def subnets_in_use(except_name: str) -> set[int]:
    used = set()
    for other in list_labs():
        if other == except_name:
            continue
        state = load_state(other)
        if state:
            used.add(int(state.subnet.split(".")[2]))
    return used


# ---------------------------------------------------------------- root file systems


def ensure_binfmt(arch: str, progress: Callable[[str], None]) -> None:
    if arch == "amd64":
        return
    if shutil.which("qemu-aarch64-static") is None:
        progress("installing qemu-user-static and binfmt-support for arm64 emulation")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static", "binfmt-support"], timeout=900)
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], timeout=30)
    if not (binfmt / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"], timeout=60, check=False)
    if not (binfmt / "qemu-aarch64").exists():
        raise LabError("arm64 emulation is not registered in binfmt_misc (update-binfmts --enable qemu-aarch64 failed)")


def ensure_rootfs(suite: str, arch: str, progress: Callable[[str], None]) -> Path:
    """A debootstrapped root for (suite, arch), built once into a temp dir and renamed: never half a cache."""
    cached = CACHE_DIR / "rootfs" / f"{suite}-{arch}"
    if (cached / "usr" / "bin" / "python3").exists():
        return cached
    require_tools("debootstrap")
    ensure_binfmt(arch, progress)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_name(f".{cached.name}.{secrets.token_hex(4)}")
    minutes = "1-2" if arch == "amd64" else "3-6"
    progress(f"building a Debian {suite} {arch} root (first time only, ~{minutes} min)")
    try:
        run(
            ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={ROOTFS_PACKAGES}", suite, str(staging),
             f"http://{MIRROR_HOST}/debian"],
            timeout=1800,
        )
        staging.rename(cached)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return cached


def prepare_root(root: Path, host: str, suite: str, proxy: str, public_key: str) -> str:
    """Make a copied root into one host: hostname, machine-id, apt via the proxy, SSH key and fresh host key."""
    (root / "etc" / "hostname").write_text(f"{host}\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host}\n::1 localhost ip6-localhost\n")
    (root / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
    sources = root / "etc" / "apt" / "sources.list"
    security = f"deb {proxy}/debian-security {suite}-security main\n"
    sources.write_text(f"deb {proxy}/debian {suite} main\ndeb {proxy}/debian {suite}-updates main\n" + security)
    for extra in (root / "etc" / "apt" / "sources.list.d").glob("*"):
        extra.unlink()
    # Like a Pi that has not run apt for a while: no fresh package index, so the
    # playbook's "older than an hour" update really runs (the copy's mtimes are new).
    lists = root / "var" / "lib" / "apt" / "lists"
    for entry in lists.glob("*"):
        if entry.is_file():
            entry.unlink()
    for stamp in (lists, root / "var" / "lib" / "apt" / "periodic" / "update-success-stamp"):
        if stamp.exists():
            os.utime(stamp, (0, 0))
    (root / "etc" / "apt" / "apt.conf.d" / "90pi-stream-lab").write_text(
        'Acquire::Retries "5";\nAcquire::http::Timeout "60";\n'
    )
    # Host keys from the cached root are shared by every copy: make this host its own.
    ssh_dir = root / "etc" / "ssh"
    for old in ssh_dir.glob("ssh_host_*"):
        old.unlink()
    key = ssh_dir / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host, "-f", str(key)], timeout=30)
    root_ssh = root / "root" / ".ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
    (root_ssh / "authorized_keys").write_text(public_key)
    os.chmod(root_ssh / "authorized_keys", 0o600)
    return (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[1]


# ---------------------------------------------------------------- network


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], timeout=30, check=check)


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def attach_namespace(namespace: str, veth: str, bridge: str, address: str, gateway: str) -> None:
    """A namespace with eth0 on the lab bridge at `address`/24."""
    if not netns_exists(namespace):
        ip("netns", "add", namespace)
    if not link_exists(veth):
        peer = veth + "p"
        ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", namespace)
        ip("-n", namespace, "link", "set", peer, "name", "eth0")
    ip("link", "set", veth, "master", bridge)
    ip("link", "set", veth, "up")
    ip("-n", namespace, "addr", "replace", f"{address}/24", "dev", "eth0")
    ip("-n", namespace, "link", "set", "eth0", "up")
    ip("-n", namespace, "link", "set", "lo", "up")
    ip("-n", namespace, "route", "replace", "default", "via", gateway)


def ensure_bridge(bridge: str, address: str) -> None:
    if not link_exists(bridge):
        ip("link", "add", bridge, "type", "bridge")
    ip("addr", "replace", f"{address}/24", "dev", bridge)
    ip("link", "set", bridge, "up")


@contextlib.contextmanager
def client_namespace(lab: Lab, name: str) -> Iterator[Client]:
    """A stranger on the lab network (own namespace and address); removed on exit."""
    index = 200 + int(hashlib.sha1(name.encode()).hexdigest(), 16) % 50
    namespace = f"psc-{short_hash(lab.name)}-{index}"
    _, veth_prefix = interface_names(lab.name)
    veth = f"{veth_prefix}c{index}"[:14]
    address = lab.subnet.rsplit(".", 1)[0] + f".{index}"
    try:
        attach_namespace(namespace, veth, lab.bridge, address, lab.host_address)
        yield Client(address=address, namespace=namespace)
    finally:
        if netns_exists(namespace):
            ip("netns", "del", namespace, check=False)
        if link_exists(veth):
            ip("link", "del", veth, check=False)


# ---------------------------------------------------------------- apt proxy


def proxy_config(lab_dir: Path, listen: str, zone: str) -> str:
    cache = CACHE_DIR / "apt-proxy"
    return f"""# Caching reverse proxy for the lab's apt, written by pi-stream.
# Every lab runs its own instance on its own bridge address; they share one cache
# directory (files are written to a temp name and renamed, so sharing is safe; each
# instance's cache manager only trims what it knows about).
worker_processes 1;
pid {lab_dir}/apt-proxy/nginx.pid;
error_log {lab_dir}/apt-proxy/error.log warn;
user www-data;
events {{ worker_connections 256; }}
http {{
    access_log {lab_dir}/apt-proxy/access.log;
    client_body_temp_path {lab_dir}/apt-proxy/tmp;
    proxy_temp_path {cache}/tmp;
    proxy_cache_path {cache}/data levels=1:2 keys_zone={zone}:10m inactive=90d max_size=20g use_temp_path=off;
    server {{
        listen {listen}:{PROXY_PORT};
        proxy_http_version 1.1;
        proxy_set_header Host {MIRROR_HOST};
        proxy_cache {zone};
        proxy_cache_lock on;
        proxy_cache_use_stale error timeout updating;
        location ~ (\\.deb|/by-hash/.*)$ {{
            # Packages and by-hash indexes never change under one name.
            proxy_pass http://{MIRROR_HOST};
            proxy_cache_valid 200 90d;
        }}
        location / {{
            proxy_pass http://{MIRROR_HOST};
            proxy_cache_valid 200 10m;
        }}
    }}
}}
"""


def start_proxy(lab_dir: Path, listen: str, zone: str) -> None:
    proxy_dir = lab_dir / "apt-proxy"
    (proxy_dir / "tmp").mkdir(parents=True, exist_ok=True)
    for sub in ("data", "tmp"):
        path = CACHE_DIR / "apt-proxy" / sub
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, "www-data", "www-data")
    conf = proxy_dir / "nginx.conf"
    conf.write_text(proxy_config(lab_dir, listen, zone))
    if pid_alive(read_pid(proxy_dir / "nginx.pid"), "nginx"):
        run(["nginx", "-c", str(conf), "-s", "reload"], timeout=30)
        return
    run(["nginx", "-t", "-q", "-c", str(conf)], timeout=30)
    run(["nginx", "-c", str(conf)], timeout=30)


def stop_proxy(lab_dir: Path) -> None:
    pid = read_pid(lab_dir / "apt-proxy" / "nginx.pid")
    if pid_alive(pid, "nginx"):
        os.kill(pid, signal.SIGQUIT)
        wait_gone(pid, 15)


# ---------------------------------------------------------------- processes


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def pid_alive(pid: int, expect: str) -> bool:
    """Alive and still the program we started (PIDs get reused)."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return expect.encode() in cmdline


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    return not Path(f"/proc/{pid}").exists()


def boot(host: LabHost, log: Path) -> int:
    require_tools("systemd-nspawn")
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--directory", str(host.root),
        "--machine", host.machine,
        "--boot",
        "--register=no",
        "--keep-unit",  # no system bus on the host to allocate a scope with
        f"--network-namespace-path=/run/netns/{host.namespace}",
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        "--resolv-conf=off",
        "--timezone=off",
        "--console=passive",
    ]
    with open(log, "ab") as handle:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, start_new_session=True)
    # Between fork and exec the child's cmdline is still ours, and pid_alive() would call it
    # dead: wait until it is nspawn (or has exited).
    deadline = time.monotonic() + 10
    while process.poll() is None and not pid_alive(process.pid, "systemd-nspawn") and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.pid


def ssh_argv(lab: Lab, host_name: str, *command: str, batch: bool = False) -> list[str]:
    host = lab.host(host_name)
    return [
        "ssh",
        *(["-o", "BatchMode=yes"] if batch else []),
        "-i", str(lab.key_path),
        "-o", f"UserKnownHostsFile={lab.known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
        "-p", str(host.ssh_port),
        f"{host.ssh_user}@{host.address}",
        *command,
    ]


def wait_for_ssh(lab: Lab, host: LabHost, pid: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, "systemd-nspawn"):
            break
        try:
            run(ssh_argv(lab, host.name, "true", batch=True), timeout=10)
            return
        except CommandError:
            time.sleep(1)
    tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.exists() else []
    state = "exited" if not pid_alive(pid, "systemd-nspawn") else f"no SSH within {timeout:g}s"
    raise LabError(f"{host.name} ({host.address}) did not come up: {state}\n" + "\n".join(tail))


# ---------------------------------------------------------------- up / down / status


def is_running(lab: Lab) -> bool:
    return bool(lab.pids) and all(pid_alive(pid, "systemd-nspawn") for pid in lab.pids.values())


def up(
    name: str = "demo",
    hosts: int = 1,
    suite: str = "bookworm",
    arch: str = "amd64",
    progress: Callable[[str], None] = print,
) -> Lab:
    """Boot a lab of `hosts` simulated Pis; idempotent (an identical running lab is returned as it is)."""
    check_name(name)
    if suite not in SUITES or arch not in ARCHES:
        raise LabError(f"unsupported lab {suite}/{arch}: suites {', '.join(SUITES)}, architectures {', '.join(ARCHES)}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, systemd-nspawn)")
    require_tools("ip", "nginx", "ssh", "ssh-keygen")
    existing = load_state(name)
    if existing and is_running(existing) and (existing.suite, existing.arch, len(existing.hosts)) == (suite, arch, hosts):
        progress(f"lab {name} is already up")
        return existing
    if existing:
        progress(f"lab {name} exists but differs or is not running: rebuilding it")
        down(name)
    try:
        return _up(name, hosts, suite, arch, progress)
    except BaseException:
        progress(f"lab {name} failed to come up: cleaning up")
        with contextlib.suppress(Exception):
            down(name)
        raise


def _up(name: str, count: int, suite: str, arch: str, progress: Callable[[str], None]) -> Lab:
    base = ensure_rootfs(suite, arch, progress)
    lab_dir = LABS_DIR / name
    lab_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(lab_dir, 0o700)
    index = allocate_subnet(subnets_in_use(name))
    net = f"{SUBNET_PREFIX}.{index}"
    bridge, veth_prefix = interface_names(name)
    host_address = f"{net}.1"
    key = lab_dir / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pi-stream-lab-{name}", "-f", str(key)], timeout=30)
    public_key = (lab_dir / "id_ed25519.pub").read_text()
    proxy_url = f"http://{host_address}:{PROXY_PORT}"
    digest = short_hash(name)
    hosts = tuple(
        LabHost(
            name=f"pi{i}",
            address=f"{net}.{i + 1}",
            machine=f"ps-{name}-pi{i}",
            root=lab_dir / "hosts" / f"pi{i}",
            namespace=f"ps-{digest}-pi{i}",
        )
        for i in range(1, count + 1)
    )
    lab = Lab(
        name=name, suite=suite, arch=arch, hosts=hosts, host_address=host_address, subnet=f"{net}.0/24",
        bridge=bridge, key_path=key, known_hosts_path=lab_dir / "known_hosts", apt_proxy_url=proxy_url,
    )
    save_state(lab)  # written first, so `down` can clean up whatever the rest manages to create

    ensure_bridge(bridge, host_address)
    start_proxy(lab_dir, host_address, f"pi_stream_apt_{digest}")
    known_hosts = []
    for host in hosts:
        progress(f"preparing {host.name} at {host.address}")
        if host.root.exists():
            shutil.rmtree(host.root)
        host.root.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--reflink=auto", str(base), str(host.root)], timeout=600)
        host_key = prepare_root(host.root, host.name, suite, proxy_url, public_key)
        known_hosts.append(f"{host.address} ssh-ed25519 {host_key}\n")
        attach_namespace(host.namespace, f"{veth_prefix}{host.name[2:]}", bridge, host.address, host_address)
    lab.known_hosts_path.write_text("".join(known_hosts))

    pids = {}
    for host in hosts:
        progress(f"booting {host.name} ({suite}/{arch}) at {host.address}")
        pids[host.name] = boot(host, lab_dir / f"{host.name}.log")
    lab = Lab(**{**lab.__dict__, "pids": pids})
    save_state(lab)
    timeout = BOOT_TIMEOUT_SECONDS if arch == "amd64" else ARM64_BOOT_TIMEOUT_SECONDS
    for host in hosts:
        wait_for_ssh(lab, host, pids[host.name], lab_dir / f"{host.name}.log", timeout)
        progress(f"{host.name} is up: ssh root@{host.address}")
    return lab


def down(name: str) -> None:
    """Stop and remove a lab: containers, namespaces, links, proxy, per-host roots. Caches stay. Idempotent."""
    check_name(name)
    lab = load_state(name)
    lab_dir = LABS_DIR / name
    bridge, veth_prefix = interface_names(name)
    if lab:
        for pid in lab.pids.values():
            if pid_alive(pid, "systemd-nspawn"):
                # With --boot, SIGTERM makes nspawn ask the container's systemd to power off.
                os.kill(pid, signal.SIGTERM)
        for pid in lab.pids.values():
            if pid_alive(pid, "systemd-nspawn") and not wait_gone(pid, STOP_TIMEOUT_SECONDS):
                os.killpg(pid, signal.SIGKILL)
                wait_gone(pid, 10)
        for host in lab.hosts:
            if netns_exists(host.namespace):
                ip("netns", "del", host.namespace, check=False)
    digest = short_hash(name)
    for namespace in Path("/run/netns").glob(f"ps*-{digest}-*") if Path("/run/netns").exists() else []:
        ip("netns", "del", namespace.name, check=False)
    links = ip("-o", "link", "show", check=False).stdout
    for match in re.finditer(rf"^\d+: ({veth_prefix}[^:@]*)[:@]", links, re.MULTILINE):
        ip("link", "del", match.group(1), check=False)
    if link_exists(bridge):
        ip("link", "del", bridge, check=False)
    if lab_dir.exists():
        stop_proxy(lab_dir)
        still_mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(lab_dir) in line]
        for mount_point in sorted(still_mounted, reverse=True):
            run(["umount", "-l", mount_point], timeout=30, check=False)
        shutil.rmtree(lab_dir, ignore_errors=True)


def status(name: str) -> Lab | None:
    check_name(name)
    lab = load_state(name)
    return lab if lab and is_running(lab) else None
