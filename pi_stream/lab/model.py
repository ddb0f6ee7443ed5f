"""What a lab is, as data: hosts, addresses, names. Pure: no root, no I/O besides the inventory file.

Every name a lab creates on the machine (bridge, veths, network namespaces,
container machines) is derived from the lab name here, so `down` can find and
remove them even when the state file is gone or was written by an older version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pi_stream.errors import LabError
from pi_stream.site import BUILDERS_GROUP, RELAYS_GROUP

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
SUITES = ("bookworm", "trixie")
ARCHES = ("amd64", "arm64")
MAX_HOSTS = 16
SUBNET_PREFIX = "10.213"  # 10.213.<index>.0/24, one per lab; only ever on this machine's bridges
SUBNET_INDEXES = range(1, 255)
FIRST_HOST_OCTET = 2  # .1 is the host side of the bridge, pi1 is .2
CLIENT_OCTETS = range(200, 255)  # extra "stranger" namespaces; far above any pi address
PROXY_PORT = 3142  # apt-cacher-ng's customary port, so the URL reads as what it is
IFNAMSIZ = 15  # Linux interface names: at most 15 characters


@dataclass(frozen=True)
class LabHost:
    name: str  # "pi1"
    address: str
    machine: str  # the systemd-nspawn machine name, "ps-<lab>-pi1"
    root: Path  # this host's own root file system (an overlay on the cached Debian root)
    ssh_user: str = "root"
    ssh_port: int = 22
    namespace: str = ""  # its network namespace under /run/netns (for `ip netns exec` when debugging)


@dataclass(frozen=True)
class Client:
    """An extra network namespace on the lab bridge: a stranger on the Pi's network."""

    address: str
    exec_prefix: list[str]  # prepend to an argv to run it inside the namespace
    namespace: str = ""


@dataclass(frozen=True)
class Lab:
    name: str
    suite: str
    arch: str
    hosts: tuple[LabHost, ...]
    host_address: str  # this machine's address on the lab bridge (where the apt proxy listens)
    subnet: str  # "10.213.7.0/24"
    key_path: Path  # the lab's ed25519 client key (0600)
    known_hosts_path: Path  # the exact host keys of the lab's containers
    apt_proxy_url: str  # "http://10.213.7.1:3142"; sources use <url>/debian and <url>/debian-security

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"lab {self.name} has no host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def write_inventory(
        self, path: Path, extra_vars: dict | None = None, builders: tuple[str, ...] = (), relays: tuple[str, ...] = ()
    ) -> None:
        """An Ansible YAML inventory for the lab hosts, with the lab's key and exact known_hosts.

        Hosts named in `builders` go into the pi_stream_builders group: they only build packages;
        those in `relays` into pi_stream_relays: they relay the Pis' cameras to remote viewers.
        """
        ssh_args = f"-o UserKnownHostsFile={self.known_hosts_path} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
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
        inventory: dict = {"all": {"hosts": {n: v for n, v in hosts.items() if n not in builders and n not in relays}}}
        kinds = ((BUILDERS_GROUP, builders), (RELAYS_GROUP, relays))
        groups = {group: {"hosts": {n: hosts[n] for n in names}} for group, names in kinds if names}
        if groups:
            inventory["all"]["children"] = groups
        if extra_vars:
            inventory["all"]["vars"] = extra_vars
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# Written by pi-stream for lab {self.name!r}; rewritten at every `lab up`/demo.\n"
            + yaml.safe_dump(inventory, sort_keys=False),
            encoding="utf-8",
        )


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise LabError(
            f"lab name {name!r}: use 1-16 characters, lowercase letters, digits and '-', starting with a letter"
        )


def check_params(hosts: int, suite: str, arch: str) -> None:
    if suite not in SUITES:
        raise LabError(f"unsupported lab suite {suite!r}: use one of {', '.join(SUITES)}")
    if arch not in ARCHES:
        raise LabError(f"unsupported lab architecture {arch!r}: use one of {', '.join(ARCHES)}")
    if not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
        raise LabError(f"a lab has 1 to {MAX_HOSTS} hosts, not {hosts!r}")


def short_hash(name: str) -> str:
    """Six hex digits: keeps interface names short (lab names are up to 16 characters)."""
    return hashlib.sha1(name.encode()).hexdigest()[:6]


def name_clash(name: str, others: list[str]) -> str | None:
    """Another lab whose short hash equals this one's: their bridges, veths and namespaces would be the same names."""
    return next((other for other in others if other != name and short_hash(other) == short_hash(name)), None)


def interface_names(name: str) -> tuple[str, str]:
    """The lab's bridge and the prefix of its veths ("psb1a2b3c", "psv1a2b3c")."""
    digest = short_hash(name)
    return f"psb{digest}", f"psv{digest}"


def host_veth(name: str, index: int) -> str:
    """Host end of pi<index>'s veth; its peer is this plus "p" until it is renamed eth0 in the namespace."""
    return f"{interface_names(name)[1]}{index}"


def client_veth(name: str, octet: int) -> str:
    return f"{interface_names(name)[1]}c{octet}"


def host_namespace(name: str, index: int) -> str:
    return f"ps-{short_hash(name)}-pi{index}"


def client_namespace_name(name: str, octet: int) -> str:
    return f"psc-{short_hash(name)}-{octet}"


def namespace_prefixes(name: str) -> tuple[str, ...]:
    """Every network namespace of a lab starts with one of these."""
    digest = short_hash(name)
    return f"ps-{digest}-", f"psc-{digest}-"


def machine_name(name: str, index: int) -> str:
    return f"ps-{name}-pi{index}"


def machine_re(name: str) -> re.Pattern[str]:
    """Matches exactly this lab's machine names: lab "a" must not match "ps-a-b-pi1" of lab "a-b"."""
    return re.compile(rf"^ps-{re.escape(name)}-pi\d+$")


def subnet_base(index: int) -> str:
    return f"{SUBNET_PREFIX}.{index}"


def subnet_index(address_or_subnet: str) -> int | None:
    """The lab index of an address in 10.213.0.0/16, or None for any other address."""
    parts = address_or_subnet.split("/")[0].split(".")
    if len(parts) == 4 and ".".join(parts[:2]) == SUBNET_PREFIX and parts[2].isdigit():
        return int(parts[2])
    return None


def allocate_subnet(name: str, taken: set[int]) -> int:
    """A free /24 index for a lab: the same one for the same name whenever it is free.

    Starting from a hash of the name (not from 1) keeps a lab's addresses stable
    across `down`/`up`, so a browser tab or an ssh command line stays valid, and
    two labs rarely even try the same subnet.
    """
    start = int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(SUBNET_INDEXES)
    for step in range(len(SUBNET_INDEXES)):
        index = SUBNET_INDEXES[(start + step) % len(SUBNET_INDEXES)]
        if index not in taken:
            return index
    raise LabError(f"no free lab subnet left in {SUBNET_PREFIX}.0.0/16: take some labs down (`pi-stream lab down --name ...`)")


def make_lab(name: str, suite: str, arch: str, count: int, index: int, directory: Path) -> Lab:
    """The lab's shape from its parameters and subnet index; nothing is created here."""
    net = subnet_base(index)
    host_address = f"{net}.1"
    hosts = tuple(
        LabHost(
            name=f"pi{i}",
            address=f"{net}.{FIRST_HOST_OCTET + i - 1}",
            machine=machine_name(name, i),
            root=directory / "hosts" / f"pi{i}" / "root",
            namespace=host_namespace(name, i),
        )
        for i in range(1, count + 1)
    )
    return Lab(
        name=name,
        suite=suite,
        arch=arch,
        hosts=hosts,
        host_address=host_address,
        subnet=f"{net}.0/24",
        key_path=directory / "id_ed25519",
        known_hosts_path=directory / "known_hosts",
        apt_proxy_url=f"http://{host_address}:{PROXY_PORT}",
    )
