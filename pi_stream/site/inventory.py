"""`inventory.yml`: the hosts, read from an ordinary Ansible YAML inventory.

Not a site.yml section, but the sections check host names against it (a camera's
`host`, a DVR's `pi`, `nginx.source.build_host`). Hosts of the
`pi_stream_builders` group only build packages and hosts of `pi_stream_relays`
only relay the Pis' cameras to remote viewers (site.yml `relay:`): both are kept
apart from the appliances, and a host is in one of the three kinds only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pi_stream.site.fields import Problems, text_problem
from pi_stream.site.files import read_yaml

BUILDERS_GROUP = "pi_stream_builders"  # inventory group of hosts that only build packages
RELAYS_GROUP = "pi_stream_relays"  # inventory group of relays: remote viewers' side of the Pis' tunnels
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh_port: int = 22
    ssh_user: str = "root"


@dataclass(frozen=True)
class Inventory:
    appliances: tuple[Host, ...] = ()
    builders: tuple[Host, ...] = ()  # group pi_stream_builders
    relays: tuple[Host, ...] = ()  # group pi_stream_relays


def load_inventory(path: Path, problems: Problems) -> tuple[tuple[Host, ...], tuple[Host, ...]]:
    """(appliance hosts, build hosts) from an Ansible YAML inventory (all.hosts and nested children groups).

    Hosts of the `pi_stream_builders` group only build packages (nginx from
    source); they are not provisioned as appliances. Relays: `read_inventory`.
    """
    inventory = read_inventory(path, problems)
    return inventory.appliances, inventory.builders


def read_inventory(path: Path, problems: Problems) -> Inventory:
    """Every host of an Ansible YAML inventory, by kind: appliances, build hosts, relays."""
    data = read_yaml(path, problems)
    if data is None:
        return Inventory()
    file = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("all"), dict):
        problems.add(file, "all", "the inventory must have a top-level 'all:' group (Ansible YAML inventory)")
        return Inventory()
    found: dict[str, Host] = {}
    builders: dict[str, Host] = {}
    relays: dict[str, Host] = {}
    groups = {BUILDERS_GROUP: builders, RELAYS_GROUP: relays}

    def walk(group: dict, group_path: str, into: dict[str, Host]) -> None:
        hosts = group.get("hosts") or {}
        if not isinstance(hosts, dict):
            problems.add(file, f"{group_path}.hosts", "must be a mapping of host name to its variables")
            hosts = {}
        for name, host_vars in hosts.items():
            host_path = f"{group_path}.hosts.{name}"
            if not isinstance(name, str) or text_problem(name, HOST_RE) or name.startswith("_"):
                problems.add(file, host_path, "host names use letters, digits, '.', '-', '_' and do not start with '_'")
                continue
            host_vars = host_vars or {}
            if not isinstance(host_vars, dict):
                problems.add(file, host_path, "host variables must be a mapping")
                continue
            port = host_vars.get("ansible_port", 22)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                problems.add(file, f"{host_path}.ansible_port", f"{port!r} is not a TCP port (1-65535)")
                port = 22
            address, user = str(host_vars.get("ansible_host", name)), str(host_vars.get("ansible_user", "root"))
            # Both reach ssh's argv, known_hosts and configs on the Pi, where a line break would start a new line.
            for key, value in (("ansible_host", address), ("ansible_user", user)):
                problem = text_problem(value)
                if problem:
                    problems.add(file, f"{host_path}.{key}", problem)
            into.setdefault(name, Host(name=name, address=address, ssh_port=port, ssh_user=user))
        children = group.get("children") or {}
        if isinstance(children, dict):
            for child_name, child in children.items():
                target = groups.get(child_name, into)
                walk(child or {}, f"{group_path}.children.{child_name}", target)

    walk(data["all"], "all", found)
    for name in sorted(set(found) & set(builders)):
        problems.add(file, f"all.children.{BUILDERS_GROUP}.hosts.{name}", "a build host is not also an appliance host: list it once")
    for name in sorted(set(relays) & (set(found) | set(builders))):
        problems.add(
            file, f"all.children.{RELAYS_GROUP}.hosts.{name}",
            "a relay is never also an appliance or build host (it faces the internet; the Pi does not): list it once",
        )
    if not found:
        problems.add(file, "all.hosts", "no hosts: add at least one Pi, e.g. `pi1: {ansible_host: 192.0.2.10}`")
    return Inventory(tuple(found.values()), tuple(builders.values()), tuple(relays.values()))
