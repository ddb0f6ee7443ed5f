"""The lab: simulated Pis on this one Linux machine (root, Linux only).

Each host is an overlay on a cached Debian root (debootstrap, per suite and
architecture; see rootfs.py for why not a copy) booted by systemd-nspawn with systemd as PID 1, in a network
namespace of its own, on a bridge private to the lab. The host side of the
bridge runs the lab's caching apt proxy (an nginx of its own), because the
containers cannot reach the mirror themselves.

    from pi_stream import lab
    state = lab.up("demo", hosts=2)          # idempotent; a running lab comes back at once
    subprocess.run(lab.ssh_argv(state, "pi1", "uname", "-a"))
    state.write_inventory(Path("inventory.yml"))
    lab.down("demo")                         # idempotent; caches stay

Modules: model (names, addresses, the dataclasses; pure), state (state.json,
locks), procs (processes we leave running), rootfs (debootstrap cache, per-host
copies), network (bridge, veths, namespaces), aptproxy (nginx), container
(systemd-nspawn), ssh (keys, argv, readiness).

Where this machine differs from ../shared/DESIGN.md "The lab", and what is done about it:
- nspawn needs `--keep-unit` as well as `--register=no` when PID 1 is not
  systemd (without it: "Failed to open system bus"); see container.py.
- nspawn leaves an empty /run/systemd/nspawn/propagate/<machine> and an image
  lock file behind because /run is not a tmpfs here; `down` removes them.
- The mirror's answers arrive here without Cache-Control or Last-Modified (an
  intercepting cache on the way adds "x-cache-status: BYPASS"), so the apt
  proxy's lifetimes come from its own proxy_cache_valid only; see aptproxy.py.
- Under qemu-user (arm64) systemd gets nspawn's stop signal as another one and
  units with credentials fail; see container.nspawn_argv and rootfs.py.
- The debootstrapped root has no ping or nft (minbase); tests use Python
  sockets, and install nftables through the proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from pi_stream.errors import CommandError, LabError
from pi_stream.lab import aptproxy, container, model, network, procs, rootfs, ssh, state
from pi_stream.lab.model import (
    Client,
    Lab,
    LabHost,
    allocate_subnet,
    check_name,
    interface_names,
    short_hash,
)
from pi_stream.lab.state import LabState
from pi_stream.proc import require_tools

__all__ = [
    "Client",
    "Lab",
    "LabHost",
    "allocate_subnet",
    "check_name",
    "client_namespace",
    "network_behind",
    "down",
    "interface_names",
    "list_labs",
    "short_hash",
    "ssh_argv",
    "status",
    "up",
]

# Seconds from starting the containers until every one answers on SSH. Booting
# takes ~3 s on an idle machine; the slack is for a busy CI box (2 cores shared).
BOOT_TIMEOUT_SECONDS = {"amd64": 60, "arm64": 600}  # arm64: systemd under qemu-user emulation
BOOT_TIMEOUT_PER_EXTRA_HOST = {"amd64": 10, "arm64": 120}


def up(
    name: str = "demo",
    hosts: int = 1,
    suite: str = "bookworm",
    arch: str = "amd64",
    progress: Callable[[str], None] = print,
) -> Lab:
    """Boot a lab of `hosts` simulated Pis and return it once every host answers on SSH.

    Idempotent: a running lab of the same shape is returned at once (its apt
    proxy restarted if it died). A lab that is half up, stopped, or of another
    shape is taken down and built again. On failure everything created is
    removed again and LabError says why (with the tail of the container's log).
    """
    check_name(name)
    model.check_params(hosts, suite, arch)
    _require_root()
    require_tools("ip", "ssh", "ssh-keygen", "cp", container.NSPAWN)
    if not Path(aptproxy.NGINX).exists():
        raise LabError(f"{aptproxy.NGINX} not found: the lab's apt proxy uses the host's nginx (apt-get install nginx)")
    with state.lab_lock(name) as held:
        current = state.load_state(name)
        if current and _running(current) and _shape(current.lab) == (suite, arch, hosts):
            _ensure_proxy(current)
            progress(f"lab {name} is already up ({', '.join(f'{h.name} {h.address}' for h in current.lab.hosts)})")
            return current.lab
        if current:
            progress(f"lab {name} is not fully running or has another shape: rebuilding it")
        _teardown(name)  # also clears what a crashed run left without a state file
        try:
            return _bring_up(name, hosts, suite, arch, progress)
        except BaseException:
            progress(f"lab {name} did not come up: removing what was created")
            with contextlib.suppress(Exception):
                _teardown(name)
                held.remove = True
            raise


def down(name: str) -> None:
    """Stop and remove a lab: containers, namespaces, links, proxy, per-host roots. Caches stay. Idempotent."""
    check_name(name)
    _require_root()
    with state.lab_lock(name) as held:
        _teardown(name)
        held.remove = True


def status(name: str) -> Lab | None:
    """The lab if it is up (every container running), else None."""
    check_name(name)
    current = state.load_state(name)
    return current.lab if current and _running(current) else None


def list_labs() -> list[str]:
    """Names of labs with a state file (up, or left half up by a crash: `down` clears those)."""
    return state.list_labs()


def ssh_argv(lab_obj: Lab, host_name: str, *command: str) -> list[str]:
    """ssh argv into a lab host with the lab's key and exact known_hosts; `command` runs there."""
    return ssh.ssh_argv(lab_obj, host_name, *command)


@contextlib.contextmanager
def client_namespace(lab_obj: Lab, name: str) -> Iterator[Client]:
    """A stranger on the lab network: its own namespace and address (.200-.254) on the lab bridge.

    Run commands in it with `[*client.exec_prefix, ...]`. Removed on exit, with
    any process still running in it. Several may exist at once; `name` picks
    the preferred address, so a given name usually gets the same one.
    """
    if not name:
        raise LabError("a client namespace needs a name")
    _require_root()
    bridge, _ = interface_names(lab_obj.name)
    if not network.link_exists(bridge):
        raise LabError(f"lab {lab_obj.name} is not up (no bridge {bridge})")
    octets = model.CLIENT_OCTETS
    start = int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(octets)
    octet = 0
    namespace = ""
    for step in range(len(octets)):
        candidate = octets[(start + step) % len(octets)]
        namespace = model.client_namespace_name(lab_obj.name, candidate)
        if network.netns_exists(namespace):
            continue  # another client holds this address
        try:
            network.ip("netns", "add", namespace)
        except CommandError:
            if network.netns_exists(namespace):
                continue  # lost a race for it
            raise
        octet = candidate
        break
    if not octet:
        raise LabError(f"no free client address left on lab {lab_obj.name}")
    address = f"{lab_obj.host_address.rsplit('.', 1)[0]}.{octet}"
    veth = model.client_veth(lab_obj.name, octet)
    try:
        network.attach_namespace(namespace, veth, bridge, address, lab_obj.host_address, create=False, ipv6=False)
        yield Client(address=address, exec_prefix=["ip", "netns", "exec", namespace], namespace=namespace)
    finally:
        inode = procs.netns_inode(network.NETNS_DIR / namespace)
        if inode is not None:
            procs.kill_in_netns({inode})
        network.delete_namespace(namespace)
        if network.link_exists(veth):
            network.ip("link", "del", veth, check=False)


@contextlib.contextmanager
def network_behind(lab_obj: Lab, host_name: str, label: str) -> Iterator[Client]:
    """A device wired to one lab host only (a DVR on the Pi's second port), in a namespace of its own.

    The host gets eth1 at 10.214.N.1/24, the device eth0 at 10.214.N.64 with
    its default route via the host. Nothing else reaches it unless that host
    forwards (its namespace's ip_forward, 0 by default). Removed on exit.
    """
    if not re.fullmatch(r"[a-z0-9]{1,8}", label):
        raise LabError(f"{label!r}: a label of 1-8 lowercase letters or digits")
    _require_root()
    host = next((h for h in lab_obj.hosts if h.name == host_name), None)
    if host is None or not network.netns_exists(host.namespace):
        raise LabError(f"lab {lab_obj.name} has no running host {host_name}")
    namespace = f"psc-{short_hash(lab_obj.name)}-{label}"
    host_end = f"{interface_names(lab_obj.name)[1]}{label}"[: model.IFNAMSIZ]
    subnet = "10.214." + lab_obj.host_address.split(".")[2]
    network.ip("netns", "add", namespace)
    try:
        network.ip("link", "add", host_end, "netns", host.namespace, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        network.ip("-n", host.namespace, "link", "set", host_end, "name", "eth1")
        network.ip("-n", host.namespace, "addr", "replace", f"{subnet}.1/24", "dev", "eth1")
        network.ip("-n", host.namespace, "link", "set", "eth1", "up")
        network.ip("-n", namespace, "addr", "replace", f"{subnet}.64/24", "dev", "eth0")
        network.ip("-n", namespace, "link", "set", "eth0", "up")
        network.ip("-n", namespace, "link", "set", "lo", "up")
        network.ip("-n", namespace, "route", "replace", "default", "via", f"{subnet}.1")
        yield Client(address=f"{subnet}.64", exec_prefix=["ip", "netns", "exec", namespace], namespace=namespace)
    finally:
        inode = procs.netns_inode(network.NETNS_DIR / namespace)
        if inode is not None:
            procs.kill_in_netns({inode})
        # Deleting the namespace destroys the veth pair, the host's eth1 with it.
        network.delete_namespace(namespace)


def host_port(lab_obj: Lab, host_name: str) -> str:
    """The lab bridge's port (host end of the veth) of one lab host."""
    index = [h.name for h in lab_obj.hosts].index(host_name) + 1
    return model.host_veth(lab_obj.name, index)


def client_port(lab_obj: Lab, client: Client) -> str:
    return model.client_veth(lab_obj.name, int(client.address.rsplit(".", 1)[1]))


@contextlib.contextmanager
def unreachable(lab_obj: Lab, label: str, pairs: list[tuple[str, str]]) -> Iterator[str]:
    """While the block runs, the lab bridge forwards nothing between each pair of ports (host_port, client_port):
    a viewer "on the internet" that cannot reach a Pi behind its home router at all. Yields the nft table's name."""
    _require_root()
    table = network.bridge_filter_table(lab_obj.name, label)
    network.drop_between(table, pairs)
    try:
        yield table
    finally:
        network.drop_table(table)


@contextlib.contextmanager
def network_gone(lab_obj: Lab, host_name: str) -> Iterator[str]:
    """While the block runs, a lab host's network is gone for every other host and client (the uplink is down);
    this machine still reaches it over the bridge's own address, so a test can watch it meanwhile."""
    _require_root()
    table = network.bridge_filter_table(lab_obj.name, f"down{host_name}")
    network.drop_port(table, host_port(lab_obj, host_name))
    try:
        yield table
    finally:
        network.drop_table(table)


# ---------------------------------------------------------------- internals


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridges, systemd-nspawn)")


def _shape(lab_obj: Lab) -> tuple[str, str, int]:
    return lab_obj.suite, lab_obj.arch, len(lab_obj.hosts)


def _running(current: LabState) -> bool:
    hosts = current.lab.hosts
    return bool(hosts) and all(procs.alive(current.containers.get(h.name), container.NSPAWN) for h in hosts)


def _ensure_proxy(current: LabState) -> None:
    """A running lab whose proxy died (killed, OOM) gets a new one; containers keep running."""
    if procs.alive(current.proxy, "nginx"):
        return
    directory = state.lab_dir(current.lab.name)
    aptproxy.stop(directory, None)  # one started by an older version, or a stuck one
    proxy = aptproxy.start(directory, state.CACHE_DIR, current.lab.host_address, _zone(current.lab.name))
    state.save_state(replace(current, proxy=proxy))


def _zone(name: str) -> str:
    return f"pistream_apt_{short_hash(name)}"


def _subnets_taken(name: str) -> set[int]:
    """Subnets of every other lab with a state file (up or not: theirs until `down`) and any 10.213 address on a link."""
    taken = network.addresses_in_use()
    for other in state.list_labs():
        if other == name:
            continue
        other_state = state.load_state(other)
        if other_state:
            index = model.subnet_index(other_state.lab.subnet)
            if index is not None:
                taken.add(index)
    return taken


def _bring_up(name: str, count: int, suite: str, arch: str, progress: Callable[[str], None]) -> Lab:
    started = time.monotonic()
    base = rootfs.ensure_rootfs(state.CACHE_DIR, suite, arch, progress)
    directory = state.lab_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # holds the lab's private key
    with state.allocation_lock():
        # Labs run side by side (the test suite runs two at once): every name they create must differ.
        clash = model.name_clash(name, state.list_labs())
        if clash:
            raise LabError(
                f"lab {name!r} would name its bridge and namespaces like lab {clash!r} (both {short_hash(name)}): "
                f"choose another name, or take {clash!r} down first"
            )
        index = allocate_subnet(name, _subnets_taken(name))
        lab_obj = model.make_lab(name, suite, arch, count, index, directory)
        current = LabState(lab=lab_obj)
        state.save_state(current)  # claims the subnet, and tells `down` what to look for
    public_key = ssh.ensure_key(lab_obj.key_path, f"pi-stream-lab-{name}")

    bridge, _ = interface_names(name)
    network.ensure_bridge(bridge, lab_obj.host_address)
    progress(f"starting the lab's apt proxy at {lab_obj.apt_proxy_url}")
    current = replace(current, proxy=aptproxy.start(directory, state.CACHE_DIR, lab_obj.host_address, _zone(name)))
    state.save_state(current)

    known_hosts = []
    for number, host in enumerate(lab_obj.hosts, start=1):
        kind = rootfs.make_host_root(base, host.root)
        progress(f"prepared {host.name}: {kind} of the Debian {suite} {arch} root")
        known_hosts.append(rootfs.prepare_root(lab_obj, host, public_key))
        network.attach_namespace(host.namespace, model.host_veth(name, number), bridge, host.address, lab_obj.host_address)
    lab_obj.known_hosts_path.write_text("".join(known_hosts), encoding="utf-8")

    containers: dict[str, procs.ProcessRef] = {}
    for host in lab_obj.hosts:
        progress(f"booting {host.name} at {host.address}")
        containers[host.name] = container.boot(host, directory / f"{host.name}.log", emulated=arch != rootfs.native_arch())
        current = replace(current, containers=dict(containers))
        state.save_state(current)
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS[arch] + BOOT_TIMEOUT_PER_EXTRA_HOST[arch] * (count - 1)
    for host in lab_obj.hosts:
        ssh.wait_for_ssh(lab_obj, host, containers[host.name], directory / f"{host.name}.log", deadline)
        progress(f"{host.name} is up: ssh root@{host.address} (key {lab_obj.key_path})")
    progress(f"lab {name} up in {time.monotonic() - started:.1f}s")
    return lab_obj


def _teardown(name: str) -> None:
    """Remove everything of lab `name`, from the state file and by name (so a crashed `up` is cleaned too)."""
    current = state.load_state(name)
    directory = state.lab_dir(name)

    refs = {ref.pid: ref for ref in container.running_for_lab(name)}
    if current:
        refs.update({ref.pid: ref for ref in current.containers.values() if procs.alive(ref, container.NSPAWN)})
    container.stop_all(list(refs.values()))

    # Whatever still runs in the lab's namespaces (container processes that outlived a killed
    # nspawn, commands in a client namespace) goes before the namespaces do.
    namespaces = set(network.lab_namespaces(name))
    if current:
        namespaces |= {h.namespace for h in current.lab.hosts if network.netns_exists(h.namespace)}
    inodes = {procs.netns_inode(network.NETNS_DIR / ns) for ns in namespaces} - {None}
    inodes.discard(procs.netns_inode(Path("/proc/self/ns/net")))
    procs.kill_in_netns({i for i in inodes if i is not None})
    for namespace in sorted(namespaces):
        network.delete_namespace(namespace)
    network.remove_lab_network(name)

    aptproxy.stop(directory, current.proxy if current else None)

    machines = {h.machine: h.root for h in current.lab.hosts} if current else {}
    hosts_dir = directory / "hosts"
    if hosts_dir.is_dir():
        for root in hosts_dir.iterdir():  # hosts/piN/root, also without a state file
            if root.name.startswith("pi") and root.name[2:].isdigit():
                machines.setdefault(model.machine_name(name, int(root.name[2:])), root / "root")
    for machine, root in machines.items():
        container.remove_leftovers(machine, root)
    rootfs.remove_tree(directory)
