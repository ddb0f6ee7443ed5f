"""Debian roots for the lab: one debootstrap per (suite, arch), cached; one copy per host, made into that host.

Notes from this machine (Debian 12 on ext4, no reflinks):
- A host's root is an overlayfs mount: the cached root read-only below, the
  host's own changes in <lab>/hosts/piN/upper. `cp -a --reflink=auto` of the
  ~330 MB root takes 2 s on an idle machine but 14 s per host while another
  lab runs a deploy next to it (ext4 cannot reflink), and `rm -rf` of it 3 s;
  the mount takes milliseconds either way. The cache is never modified once
  renamed into place, which is what overlayfs asks of a lower layer. Where the
  mount fails (no overlayfs), the host gets a plain copy instead. `down`
  unmounts it (rootfs.remove_tree unmounts anything under the lab directory).
- arm64 runs through qemu-user-static registered in binfmt_misc with the F flag
  (the interpreter is opened at registration), so the container root needs no
  qemu binary. Without the F flag the interpreter is copied into the root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from pi_stream.errors import CommandError, LabError
from pi_stream.lab import procs
from pi_stream.lab.model import Lab, LabHost
from pi_stream.lab.state import file_lock
from pi_stream.proc import require_tools, run

MIRROR = "http://deb.debian.org/debian"
# python3 and python3-apt for Ansible's apt module; sudo and iproute2 like a Pi; dbus for systemd's hostnamectl & co.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt", "iproute2", "sudo", "ca-certificates")
DEBOOTSTRAP_TIMEOUT = {"amd64": 1800, "arm64": 3600}  # seconds; arm64 runs its second stage under emulation
BUILD_MINUTES = {"amd64": "1-3", "arm64": "3-8"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_ENTRY = {"arm64": "qemu-aarch64"}


def native_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


# ---------------------------------------------------------------- emulation


def ensure_binfmt(arch: str, progress: Callable[[str], None]) -> None:
    """Register qemu for a foreign architecture (installs qemu-user-static once)."""
    if arch == native_arch():
        return
    entry = BINFMT / QEMU_ENTRY[arch]
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], timeout=30)
    if not entry.exists():
        if shutil.which("update-binfmts") is None or not Path("/usr/bin/qemu-aarch64-static").exists():
            progress(f"installing qemu-user-static and binfmt-support to run {arch} (first time only)")
            run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static", "binfmt-support"],
                timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        run(["update-binfmts", "--enable", QEMU_ENTRY[arch]], timeout=60, check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise LabError(f"{arch} emulation is not registered in binfmt_misc ({entry}); try `update-binfmts --enable {QEMU_ENTRY[arch]}`")


def binfmt_interpreter(arch: str) -> tuple[Path, bool] | None:
    """The registered interpreter for `arch` and whether it is fixed at registration (flag F)."""
    if arch == native_arch():
        return None
    entry = BINFMT / QEMU_ENTRY[arch]
    interpreter, fixed = None, False
    for line in entry.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "interpreter":
            interpreter = Path(value)
        elif key == "flags:":
            fixed = "F" in value
    if interpreter is None:
        raise LabError(f"no interpreter in {entry}")
    return interpreter, fixed


# ---------------------------------------------------------------- the cached root


def cached_root(cache_root: Path, suite: str, arch: str) -> Path:
    return cache_root / "rootfs" / f"{suite}-{arch}"


def is_complete(root: Path) -> bool:
    return all((root / part).exists() for part in ("usr/bin/python3", "usr/sbin/sshd", "lib/systemd/systemd"))


def unmount_under(directory: Path) -> None:
    """Unmount whatever is mounted at or below `directory`, deepest first (debootstrap mounts /proc in its target)."""
    prefix = str(directory)
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        with contextlib.suppress(CommandError):
            run(["umount", "--lazy", point], timeout=30)


def remove_tree(directory: Path) -> None:
    """rm -rf that never descends into a mount (rmtree would walk into a leftover /proc or /sys)."""
    if not directory.exists():
        return
    unmount_under(directory)
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        raise LabError(f"could not remove {directory}")


def _uses(pid: int, prefix: str) -> bool:
    with contextlib.suppress(OSError):
        for link in ("root", "cwd"):
            if (os.readlink(f"/proc/{pid}/{link}") + "/").startswith(prefix):
                return True
    return any((part + "/").startswith(prefix) for part in procs.cmdline(pid))


def kill_users_of(directory: Path) -> None:
    """Kill what still works in `directory`: an interrupted debootstrap (its target is an argument)
    and what it runs chrooted there (dpkg, maintainer scripts). Its output went to a pipe of the
    killed caller, so it usually dies of SIGPIPE; usually is not enough before an rm -rf."""
    prefix = str(directory) + "/"
    for _ in range(10):
        pids = [pid for pid in procs.all_pids() if pid != os.getpid() and _uses(pid, prefix)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            procs.reap(pid)
        time.sleep(0.3)


def ensure_rootfs(cache_root: Path, suite: str, arch: str, progress: Callable[[str], None]) -> Path:
    """The debootstrapped root for (suite, arch): built once into a temp dir, then renamed into place.

    The rename is atomic, so the cache directory either holds a complete root or
    does not exist; an interrupted build leaves only a dot-named temp dir, which
    the next build removes. A lock per (suite, arch) makes two labs starting at
    once build it once.
    """
    cached = cached_root(cache_root, suite, arch)
    if is_complete(cached):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(cached.parent / f".{cached.name}.lock"):
        if is_complete(cached):
            return cached  # built by whoever held the lock before us
        require_tools("debootstrap")
        for leftover in cached.parent.glob(f".{cached.name}.*.tmp"):
            progress(f"removing an interrupted build: {leftover}")
            kill_users_of(leftover)
            remove_tree(leftover)
        if cached.exists():
            progress(f"{cached} is incomplete (not built by pi-stream?): rebuilding it")
            stale = cached.with_name(f".{cached.name}.{secrets.token_hex(4)}.tmp")
            cached.rename(stale)
            remove_tree(stale)
        ensure_binfmt(arch, progress)
        staging = cached.with_name(f".{cached.name}.{secrets.token_hex(4)}.tmp")
        progress(f"building Debian {suite} {arch} root (first time, ~{BUILD_MINUTES.get(arch, '3-8')} min)")
        started = time.monotonic()
        try:
            run(
                ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(PACKAGES)}",
                 suite, str(staging), MIRROR],
                timeout=DEBOOTSTRAP_TIMEOUT.get(arch, 3600),
            )
            if not is_complete(staging):
                raise LabError(f"debootstrap of {suite} {arch} finished but the root lacks python3, sshd or systemd")
            unmount_under(staging)
            staging.rename(cached)
        except BaseException:
            kill_users_of(staging)
            remove_tree(staging)
            raise
        progress(f"Debian {suite} {arch} root built in {time.monotonic() - started:.0f}s, cached in {cached}")
    return cached


# ---------------------------------------------------------------- one host's root


def make_host_root(base: Path, root: Path) -> str:
    """Give a host its root at `root` (an overlay on `base`, else a copy); returns which of the two."""
    host_dir = root.parent
    remove_tree(host_dir)
    upper, work = host_dir / "upper", host_dir / "work"
    for directory in (upper, work, root):
        directory.mkdir(parents=True)
    try:
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}", str(root)],
            timeout=30)
        return "overlay"
    except CommandError:
        remove_tree(host_dir)
        host_dir.mkdir(parents=True)
        run(["cp", "-a", "--reflink=auto", str(base), str(root)], timeout=600)
        return "copy"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    # Replace, never write through: a symlink in the copied root (resolv.conf) must not lead outside it.
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def prepare_root(lab: Lab, host: LabHost, public_key: str) -> str:
    """Make a fresh copy into `host`: identity, apt through the proxy, SSH. Returns its known_hosts line."""
    root = host.root
    etc = root / "etc"
    _write(etc / "hostname", f"{host.name}\n")
    others = "".join(f"{other.address}\t{other.name}\n" for other in lab.hosts)
    _write(etc / "hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{others}")
    # A fresh identity per copy: journald, dbus and DHCP client ids derive from it.
    _write(etc / "machine-id", secrets.token_hex(16) + "\n", 0o444)
    # There is no DNS in the lab (no route out). The root inherited the host's resolver, whose
    # packets the host would silently drop: every lookup would hang for seconds. A loopback
    # resolver with nothing listening fails at once; lab names come from /etc/hosts.
    _write(etc / "resolv.conf", "# pi-stream lab: no DNS here; lab hosts are in /etc/hosts\nnameserver 127.0.0.1\n")

    # Units with nothing to do in a container that fail now and then on a busy machine (both
    # seen in CI runs), leaving the system "degraded": remounting "/" is nspawn's business, and
    # the runlevel record in utmp has no reader here.
    for unit in ("systemd-remount-fs.service", "systemd-update-utmp-runlevel.service"):
        mask = etc / "systemd" / "system" / unit
        if mask.is_symlink() or mask.exists():
            mask.unlink()
        mask.parent.mkdir(parents=True, exist_ok=True)
        mask.symlink_to("/dev/null")

    # Once started, root's user manager (user@0.service) stays, as it does on a Pi while Ansible
    # keeps a session open. By default logind stops it 10 s after the last session closes, and a
    # login arriving while it stops waits a minute or more (seen in CI: the tests' one-shot
    # `ssh pi1 fail2ban-client status` hung past its 60 s timeout right after a session ended).
    # Lingering would start it at boot, which fails inside the container; this keeps the one the
    # first login starts.
    _write(etc / "systemd" / "logind.conf.d" / "50-pi-stream-lab.conf",
           "# pi-stream lab: keep root's user manager between logins (see pi_stream/lab/rootfs.py)\n[Login]\nUserStopDelaySec=infinity\n")

    _prepare_apt(lab, root)
    host_key = _prepare_ssh(host, root, public_key)
    if lab.arch != native_arch():
        _prepare_emulation(lab.arch, root)
    return f"{host.address} {host_key}\n"


def _prepare_emulation(arch: str, root: Path) -> None:
    """What systemd needs to boot and stop cleanly under qemu-user (found booting bookworm arm64 here)."""
    interpreter = binfmt_interpreter(arch)
    if interpreter and not interpreter[1]:
        # binfmt without F looks the interpreter up at exec time, inside the container.
        dest = root / str(interpreter[0]).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(interpreter[0], dest)
    system = root / "etc" / "systemd" / "system"
    # nspawn stops an emulated container with SIGINT (see container.nspawn_argv): make that a poweroff.
    target = system / "ctrl-alt-del.target"
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to("/lib/systemd/system/poweroff.target")
    # Units with LoadCredential= fail under emulation ("Failed at step CREDENTIALS ...: Invalid
    # argument": systemd mounts a credentials file system with a syscall qemu-user rejects), which
    # leaves systemd-tmpfiles-setup and systemd-sysusers failed and the system "degraded". The lab
    # passes no credentials, so an empty assignment (which resets the list) loses nothing.
    for unit in sorted((root / "lib" / "systemd" / "system").glob("*.service")):
        text = unit.read_text(errors="replace")
        resets = [f"{key}=\n" for key in ("LoadCredential", "ImportCredential") if f"\n{key}=" in text]
        if resets:
            _write(system / f"{unit.name}.d" / "50-pi-stream-lab-emulation.conf",
                   "# pi-stream lab: no credentials under qemu-user emulation (see rootfs.py)\n[Service]\n" + "".join(resets))


def _prepare_apt(lab: Lab, root: Path) -> None:
    apt = root / "etc" / "apt"
    proxy, suite = lab.apt_proxy_url, lab.suite
    _write(
        apt / "sources.list",
        "# pi-stream lab: deb.debian.org through the lab's caching proxy on the host\n"
        f"deb {proxy}/debian {suite} main\n"
        f"deb {proxy}/debian {suite}-updates main\n"
        f"deb {proxy}/debian-security {suite}-security main\n",
    )
    for extra in (apt / "sources.list.d").glob("*"):
        extra.unlink()
    _write(
        apt / "apt.conf.d" / "90pi-stream-lab",
        "// pi-stream lab: the proxy or the mirror behind it may hiccup; retry rather than fail a deploy.\n"
        'Acquire::Retries "5";\n'
        'Acquire::http::Timeout "60";\n'
        'Acquire::http::Proxy "false";\n',
    )
    # Like a Pi that has not run apt for a while: no package index, and stamps from long ago,
    # so a playbook's "update the cache if older than an hour" really runs (the copy's mtimes are new).
    lists = root / "var" / "lib" / "apt" / "lists"
    for entry in lists.glob("*"):
        if entry.is_file():
            entry.unlink()
    for stamp in (lists, root / "var" / "lib" / "apt" / "periodic" / "update-success-stamp"):
        if stamp.exists():
            os.utime(stamp, (0, 0))


def _prepare_ssh(host: LabHost, root: Path, public_key: str) -> str:
    ssh_dir = root / "etc" / "ssh"
    # The cached root's host keys would be shared by every copy: each host gets its own, and
    # known_hosts gets exactly that key, so StrictHostKeyChecking=yes holds.
    for old in ssh_dir.glob("ssh_host_*"):
        old.unlink()
    key = ssh_dir / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(key)], timeout=30)
    _write(
        ssh_dir / "sshd_config.d" / "10-pi-stream-lab.conf",
        "# pi-stream lab: key-only root login (as on a provisioned Pi) with the one host key in known_hosts.\n"
        "PermitRootLogin prohibit-password\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n",
    )
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "ssh.service"
    if not wants.is_symlink():
        # openssh-server's postinst enables it; make sure, since the lab is unusable without sshd.
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/lib/systemd/system/ssh.service")
    root_ssh = root / "root" / ".ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root_ssh, 0o700)
    _write(root_ssh / "authorized_keys", public_key if public_key.endswith("\n") else public_key + "\n", 0o600)
    _add_sudo_user(root, public_key)
    key_type, key_data = (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{key_type} {key_data}"


# Raspberry Pi OS has no root login over SSH: its first user (made by the Imager) has sudo without
# a password (/etc/sudoers.d/010_pi-nopasswd). Every lab host has one too, with the lab's key, so a
# site made by `pi-stream init` (ssh user pi, become with sudo) is deployed as it would be on a Pi.
SUDO_USER = "pi"


def _add_sudo_user(root: Path, public_key: str) -> None:
    home = root / "home" / SUDO_USER
    if not home.exists():
        run(["useradd", "--root", str(root), "--create-home", "--shell", "/bin/bash", "--groups", "sudo", SUDO_USER], timeout=30)
    _write(root / "etc" / "sudoers.d" / "010_pi-nopasswd", f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(ssh_dir / "authorized_keys", public_key if public_key.endswith("\n") else public_key + "\n", 0o600)
    uid, gid = (home.stat().st_uid, home.stat().st_gid)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, gid)
