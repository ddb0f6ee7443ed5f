"""The lab itself: two simulated Pis that answer SSH, reach each other, install through the proxy,
and leave nothing behind after `down`.

Uses its own lab name ("labtest"), so a `demo` lab or the end-to-end `test` lab
left running is never touched. Every subprocess has a timeout; `up` and `down`
are bounded by their own timeouts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from pi_stream import lab
from pi_stream.errors import LabError
from pi_stream.lab import container, model, state

pytestmark = pytest.mark.lab

LAB = "labtest"


def sh(argv: list[str], timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    stdin = subprocess.DEVNULL if input is None else None  # see pi_stream/proc.py: never the worker's own stdin
    return subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=timeout, input=input, check=False)


def on(lab_obj: lab.Lab, host: str, *argv: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run argv on a lab host. ssh hands its command to the remote shell as one string, hence the quoting."""
    return sh(lab.ssh_argv(lab_obj, host, shlex.join(argv)), timeout=timeout, input=input)


def leftovers(name: str) -> list[str]:
    """Everything of lab `name` still on the machine: links, namespaces, mounts, processes, files."""
    bridge, veth = lab.interface_names(name)
    found = [f"link {p.name}" for p in Path("/sys/class/net").iterdir() if p.name == bridge or p.name.startswith(veth)]
    namespaces = sh(["ip", "netns", "list"], timeout=30).stdout.split("\n")
    found += [f"netns {ns.split()[0]}" for ns in namespaces if ns.startswith(model.namespace_prefixes(name))]
    found += [f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines() if f"/labs/{name}/" in line]
    pattern = model.machine_re(name)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [part.decode() for part in (proc / "cmdline").read_bytes().split(b"\0") if part]
        except OSError:
            continue
        machine = container.machine_of(argv)
        if (machine and pattern.match(machine)) or any(f"/labs/{name}/" in part for part in argv):
            found.append(f"process {proc.name} {' '.join(argv)}")
    found += [f"leftover {p}" for p in Path("/run/systemd/nspawn/propagate").glob(f"ps-{name}-pi*")]
    for path in (state.LABS_DIR / name, state.LABS_DIR / f".{name}.lock"):
        if path.exists():
            found.append(f"file {path}")
    return found


@pytest.fixture(scope="module")
def lab2():
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, systemd-nspawn); deselect them with -m 'not lab'")
    lab.down(LAB)  # a previous run killed halfway
    started = time.monotonic()
    try:
        yield lab.up(LAB, hosts=2, progress=print)
    finally:
        lab.down(LAB)
    print(f"\nlab {LAB}: session took {time.monotonic() - started:.1f}s")


def test_every_host_answers_ssh_with_the_lab_key_and_pinned_host_key(lab2):
    known = lab2.known_hosts_path.read_text().splitlines()
    assert len(known) == 2 and all(line.split()[1] == "ssh-ed25519" for line in known)
    assert oct(lab2.key_path.stat().st_mode & 0o777) == "0o600"
    for host in lab2.hosts:
        result = on(lab2, host.name, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host.name
        # systemd is PID 1 and got to a running system (degraded would mean a unit failed in the container).
        state_of = on(lab2, host.name, "systemctl", "is-system-running", "--wait", timeout=90).stdout.strip()
        assert state_of == "running", on(lab2, host.name, "systemctl", "--failed", "--no-legend").stdout


def test_a_wrong_host_key_is_refused(lab2, tmp_path):
    """StrictHostKeyChecking=yes with exact keys: a host presenting another key is not trusted."""
    pi1, pi2 = lab2.hosts
    swapped = tmp_path / "known_hosts"
    lines = lab2.known_hosts_path.read_text().splitlines()
    swapped.write_text(f"{pi1.address} {lines[1].split(' ', 1)[1]}\n")  # pi2's key under pi1's address
    argv = [part.replace(str(lab2.known_hosts_path), str(swapped)) for part in lab.ssh_argv(lab2, "pi1", "true")]
    result = sh(argv)
    assert result.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_host_reaches_containers_and_containers_reach_each_other_and_the_host(lab2):
    pi1, pi2 = lab2.hosts
    for host in lab2.hosts:
        assert sh(["ping", "-c", "1", "-W", "3", host.address], timeout=30).returncode == 0, f"host -> {host.name}"
    # No ping in a minbase root; a TCP connect that reads sshd's banner is a stronger check anyway.
    probe = "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 5); print('connected')"
    for source, target, port in ((pi1, "pi2", 22), (pi2, pi1.address, 22), (pi1, lab2.host_address, model.PROXY_PORT)):
        result = on(lab2, source.name, "python3", "-c", probe, target, str(port))
        assert result.stdout.strip() == "connected", f"{source.name} -> {target}:{port}: {result.stderr}"


def test_container_to_container_ssh(lab2):
    """pi1 logs into pi2 with the lab key and pi2's pinned host key (what a jump host would do)."""
    pi2 = lab2.host("pi2")
    key = lab2.key_path.read_text()
    assert on(lab2, "pi1", "sh", "-c", "umask 077; cat > ~/.ssh/lab_key", input=key).returncode == 0
    known = lab2.known_hosts_path.read_text()
    assert on(lab2, "pi1", "sh", "-c", "cat > ~/.ssh/lab_known_hosts", input=known).returncode == 0
    try:
        result = on(
            lab2, "pi1", "ssh", "-i", "~/.ssh/lab_key", "-o", "UserKnownHostsFile=~/.ssh/lab_known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{pi2.address}", "hostname",
        )
        assert result.stdout.strip() == "pi2", result.stderr
    finally:
        on(lab2, "pi1", "sh", "-c", "rm -f ~/.ssh/lab_key ~/.ssh/lab_known_hosts")


def test_apt_works_through_the_proxy_and_nftables_has_its_capability(lab2):
    """apt-get update + install reach deb.debian.org only through the lab's proxy; nft needs CAP_NET_ADMIN."""
    sources = on(lab2, "pi1", "cat", "/etc/apt/sources.list").stdout
    assert f"{lab2.apt_proxy_url}/debian-security {lab2.suite}-security" in sources
    update = on(lab2, "pi1", "apt-get", "update", "-q", timeout=300)
    assert update.returncode == 0, update.stdout[-2000:] + update.stderr[-2000:]
    install = on(lab2, "pi1", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                 "--no-install-recommends", "nftables", timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    access_log = (state.LABS_DIR / LAB / "apt-proxy" / "access.log").read_text()
    pi1 = lab2.host("pi1").address
    assert re.search(rf"^{re.escape(pi1)} .*InRelease", access_log, re.MULTILINE), "apt-get update went through the proxy"
    assert re.search(rf"^{re.escape(pi1)} .*/nftables_.*\.deb HTTP/1\.1\" 200 ", access_log, re.MULTILINE)
    added = on(lab2, "pi1", "nft", "add", "table", "inet", "labtest")
    assert added.returncode == 0, added.stderr
    assert "table inet labtest" in on(lab2, "pi1", "nft", "list", "ruleset").stdout
    on(lab2, "pi1", "nft", "delete", "table", "inet", "labtest")


def test_a_client_namespace_reaches_a_container_and_is_removed(lab2):
    target = lab2.host("pi2")
    with lab.client_namespace(lab2, "stranger") as client, lab.client_namespace(lab2, "other") as other:
        assert client.address != other.address and client.address.startswith(lab2.subnet.rsplit(".", 1)[0])
        ping = sh([*client.exec_prefix, "ping", "-c", "1", "-W", "3", target.address], timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        banner = sh([*client.exec_prefix, "python3", "-c",
                     "import socket,sys; print(socket.create_connection((sys.argv[1], 22), 5).recv(64))", target.address])
        assert "SSH-2.0" in banner.stdout, banner.stderr
        # The container sees the stranger's own address (what fail2ban bans).
        seen = on(lab2, "pi2", "ip", "neigh", "show", client.address).stdout
        assert client.address in seen
        # No IPv6 in a viewer's namespace: no link-local address arrives later and tells a browser the network changed.
        assert sh(["ip", "-n", client.namespace, "-6", "addr", "show"], timeout=30).stdout == ""
        namespace = client.namespace
    assert namespace not in sh(["ip", "netns", "list"], timeout=30).stdout


def test_up_again_returns_the_running_lab_at_once(lab2):
    started = time.monotonic()
    again = lab.up(LAB, hosts=2, progress=print)
    took = time.monotonic() - started
    print(f"\nlab {LAB}: up of a running lab took {took:.2f}s")
    assert again == lab2
    assert lab.status(LAB) == lab2 and LAB in lab.list_labs()


def test_a_failed_up_rolls_back(monkeypatch):
    """A container that cannot boot: LabError with the container's log, and nothing left behind."""
    failing = "labfail"
    lab.down(failing)
    real = container.nspawn_argv
    monkeypatch.setattr(container, "nspawn_argv", lambda *args: [*real(*args), "--no-such-option"])
    with pytest.raises(LabError, match=r"pi1 .*exited(.|\n)*no-such-option"):
        lab.up(failing, hosts=1, progress=print)
    assert leftovers(failing) == []
    assert lab.status(failing) is None and failing not in lab.list_labs()


def test_down_leaves_nothing_is_idempotent_and_a_warm_up_is_fast(lab2):
    """Runs last: takes the session's lab down, checks the machine is clean, then measures up and down."""
    lab.down(LAB)
    assert leftovers(LAB) == []
    lab.down(LAB)  # idempotent
    assert lab.status(LAB) is None and LAB not in lab.list_labs()

    for round_ in (1, 2):  # twice: up/down is repeatable, not only once
        started = time.monotonic()
        again = lab.up(LAB, hosts=2, progress=lambda _: None)
        up_took = time.monotonic() - started
        assert on(again, "pi2", "hostname").stdout.strip() == "pi2"
        started = time.monotonic()
        lab.down(LAB)
        down_took = time.monotonic() - started
        print(f"\nlab {LAB} round {round_}: up (warm cache, 2 hosts) {up_took:.1f}s, down {down_took:.1f}s")
        assert leftovers(LAB) == []
