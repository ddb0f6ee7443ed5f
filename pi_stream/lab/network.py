"""The lab network: one Linux bridge per lab on the host, one network namespace per container or client.

    host (bridge psbXXXXXX, 10.213.N.1) ── psvXXXXXX1 ══ eth0 in ns ps-XXXXXX-pi1 (10.213.N.2) ── nspawn pi1
                                        ── psvXXXXXX2 ══ eth0 in ns ps-XXXXXX-pi2 (10.213.N.3) ── nspawn pi2
                                        ── psvXXXXXXc200 ══ eth0 in ns psc-XXXXXX-200 (a client, .200+)

No forwarding and no NAT: the containers reach each other over the bridge and
the host at .1 (where the apt proxy listens), nothing else. Their default
route points at .1 because a real Pi has one (Ansible's default_ipv4 fact and
tools that look for "the" address need it); the host does not forward
(net.ipv4.ip_forward is 0 here and the lab never sets it), so packets for
anywhere else end at the host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pi_stream.lab import model
from pi_stream.proc import run

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], timeout=30, check=check)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ensure_bridge(bridge: str, address: str) -> None:
    if not link_exists(bridge):
        ip("link", "add", bridge, "type", "bridge")
    ip("addr", "replace", f"{address}/24", "dev", bridge)
    ip("link", "set", bridge, "up")


def attach_namespace(
    namespace: str, veth: str, bridge: str, address: str, gateway: str, create: bool = True, ipv6: bool = True
) -> None:
    """A namespace whose eth0 sits on the lab bridge at `address`/24 (created unless `create` is False).

    ipv6=False: no IPv6 in the namespace at all. A link brought up gets its IPv6
    link-local address about 1.7 s later, once duplicate address detection is
    done (measured here); a browser started in that window sees the network change
    under its first requests and fails them (Chromium: ERR_NETWORK_CHANGED). The
    lab is IPv4 only, so a viewer's namespace loses nothing without it.
    """
    if create:
        ip("netns", "add", namespace)  # fails if it exists: callers use that as an atomic claim
    if not link_exists(veth):
        peer = veth + "p"
        ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", namespace)
        ip("-n", namespace, "link", "set", peer, "name", "eth0")
    if not ipv6:
        run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], timeout=30)
    ip("link", "set", veth, "master", bridge)
    ip("link", "set", veth, "up")
    ip("-n", namespace, "addr", "replace", f"{address}/24", "dev", "eth0")
    ip("-n", namespace, "link", "set", "eth0", "up")
    ip("-n", namespace, "link", "set", "lo", "up")
    ip("-n", namespace, "route", "replace", "default", "via", gateway)


def delete_namespace(namespace: str) -> None:
    # Deleting the namespace destroys the veth peer inside it, and with it the host end.
    if netns_exists(namespace):
        ip("netns", "del", namespace, check=False)


def lab_namespaces(name: str) -> list[str]:
    """Every namespace this lab owns (hosts and clients), found by name, not from the state file."""
    if not NETNS_DIR.is_dir():
        return []
    prefixes = model.namespace_prefixes(name)
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefixes))


def lab_links(name: str) -> list[str]:
    """The lab's bridge and veths (host ends) that exist now."""
    bridge, veth_prefix = model.interface_names(name)
    return sorted(
        p.name for p in Path("/sys/class/net").iterdir() if p.name == bridge or p.name.startswith(veth_prefix)
    )


def addresses_in_use() -> set[int]:
    """Subnet indexes of 10.213.x.y addresses on this machine's interfaces (stale bridges, other tools)."""
    out = ip("-o", "-4", "addr", "show", check=False).stdout
    used = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            index = model.subnet_index(parts[parts.index("inet") + 1])
            if index is not None:
                used.add(index)
    return used


def bridge_filter_table(name: str, label: str) -> str:
    """An nftables table of the bridge family, named after the lab: `down` finds and removes it by that prefix."""
    return f"ps{model.short_hash(name)}{label}"


def drop_between(table: str, pairs: list[tuple[str, str]]) -> None:
    """Make (or replace) `table`: the lab bridge forwards no frame between each pair of its ports, either way.

    The switch itself drops them, as the internet does not route to a home behind NAT: neither
    end's own firewall is involved, so a test can prove the two cannot reach each other at all."""
    rules = "".join(f'        iifname "{a}" oifname "{b}" counter drop\n        iifname "{b}" oifname "{a}" counter drop\n' for a, b in pairs)
    drop_table(table)
    run(["nft", "-f", "-"], input=f"table bridge {table} {{\n    chain forward {{\n        type filter hook forward priority 0; policy accept;\n"
        f"{rules}    }}\n}}\n", timeout=30)


def drop_port(table: str, port: str) -> None:
    """Make `table`: the lab bridge forwards nothing to or from `port` (that host's network is gone; this machine still reaches it)."""
    drop_table(table)
    run(["nft", "-f", "-"], input=f"table bridge {table} {{\n    chain forward {{\n        type filter hook forward priority 0; policy accept;\n"
        f'        iifname "{port}" counter drop\n        oifname "{port}" counter drop\n    }}\n}}\n', timeout=30)


def drop_table(table: str) -> None:
    run(["nft", "delete", "table", "bridge", table], timeout=30, check=False)


def lab_bridge_tables(name: str) -> list[str]:
    out = run(["nft", "list", "tables", "bridge"], timeout=30, check=False).stdout
    prefix = bridge_filter_table(name, "")
    return [parts[2] for parts in (line.split() for line in out.splitlines()) if len(parts) == 3 and parts[2].startswith(prefix)]


def remove_lab_network(name: str) -> None:
    for table in lab_bridge_tables(name):
        drop_table(table)
    for namespace in lab_namespaces(name):
        delete_namespace(namespace)
    for link in lab_links(name):
        ip("link", "del", link, check=False)
