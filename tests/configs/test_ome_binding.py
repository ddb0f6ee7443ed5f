"""OME's listeners: which address each binds (OME's schema says), and which of them other hosts reach (real nft).

OME 0.19 binds every listener on every address of the one server-wide <IP> list (api_server.cpp,
rtmp_provider.cpp, webrtc_publisher.cpp, ice_port.cpp and ice_port_manager.cpp all call
SocketAddress::Create(server.GetIPList(), port)); a port element is a number and a protocol, and the host of
<TcpRelay> and <IceCandidate> is only what OME announces. 0.21 is the same. So the API, RTMP ingest and
signalling cannot be bound to 127.0.0.1 alone while the relay answers viewers: the firewall's table
inet pi_stream_ome closes them instead, and it stays when the firewall unit is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import pytest

from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.configs.test_webrtc_render import SERVER_XML, ome_schema  # noqa: F401 (a fixture)

PI_ADDRESS, PEER_ADDRESS = "10.231.0.1", "10.231.0.2"


def test_ome_has_one_address_list_for_every_listener(ome_schema):  # noqa: F811
    """The schema OME's source declares: <IP> under <Server> is the only bind address; under <Bind> the listeners
    have ports (cfg::Text port types), worker counts and switches, and no address of their own."""
    assert ome_schema.children["IP"].repeats and ome_schema.children["IP"].value_type == "string"
    leaves = [(path, e) for path, e in ome_schema.at("Bind").walk("Bind") if e.is_leaf]
    addressed = [path for path, e in leaves if e.value_type == "text" and "Port" not in e.cpp_type]
    assert addressed == [], "a listener with an address of its own: bind the internal ones to 127.0.0.1 there"
    names = {path.rsplit(".", 1)[1] for path, _ in leaves}
    assert not names & {"IP", "Ip", "Address", "Host", "Bind", "Listen"}, names


def listeners(server_xml: str) -> dict[tuple[str, int], str]:
    """(protocol, port) -> element, for every port the rendered Server.xml makes OME bind."""
    root = ET.fromstring(server_xml)
    found = {}
    for element in root.find("Bind").iter():
        text = (element.text or "").strip()
        if element.tag in ("Port", "TLSPort"):
            port, _, proto = text.partition("/")
            found[(proto or "tcp", int(port))] = element.tag
        elif element.tag == "IceCandidate":
            port, _, proto = text.rpartition(":")[2].partition("/")
            found[(proto or "udp", int(port))] = element.tag
        elif element.tag == "TcpRelay":
            found[("tcp", int(text.rpartition(":")[2]))] = element.tag
    return found


LISTENER = """
import select, socket, sys, time
socks = []
for spec in sys.argv[1:]:
    proto, port = spec.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    if proto == "tcp":
        s.listen(8)
    socks.append((proto, s))
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    readable, _, _ = select.select([s for _, s in socks], [], [], 0.5)
    for proto, s in socks:
        if s in readable:
            if proto == "tcp":
                s.accept()[0].close()
            else:
                data, peer = s.recvfrom(64)
                s.sendto(data, peer)
"""

PROBE = """
import json, socket, sys
address, results = sys.argv[1], {}
for spec in sys.argv[2:]:
    proto, port = spec.split(":")
    if proto == "tcp":
        with socket.socket() as s:
            s.settimeout(1)
            results[spec] = s.connect_ex((address, int(port))) == 0
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            s.sendto(b"ping", (address, int(port)))
            try:
                results[spec] = s.recv(64) == b"ping"
            except OSError:
                results[spec] = False
print(json.dumps(results))
"""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: ("pi", "peer")."""
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")):
        pytest.fail("needs root, ip and nft (CI runs as root)")
    tag = uuid.uuid4().hex[:6]
    pi, peer = f"ps-ome-{tag}-pi", f"ps-ome-{tag}-peer"
    try:
        for name in (pi, peer):
            run("ip", "netns", "add", name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", pi, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", peer)
        for name, dev, address in ((pi, "veth0", PI_ADDRESS), (peer, "veth1", PEER_ADDRESS)):
            run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", dev)
            run("ip", "-n", name, "link", "set", dev, "up")
        yield pi, peer
    finally:
        for name in (pi, peer):
            run("ip", "netns", "del", name, check=False)


def test_omes_inner_ports_stay_closed_to_other_hosts_when_the_firewall_unit_stops(make_site, two_hosts):
    pi, peer = two_hosts
    files = {target: f.content.decode() for target, f in render_site(load_site(make_site("webrtc")))["pi1"].items()}
    bound = listeners(files[SERVER_XML])
    relay = ("tcp", int(ET.fromstring(files[SERVER_XML]).findtext(".//TcpRelay").rpartition(":")[2]))
    assert relay in bound and len(bound) >= 5, bound  # API, RTMP, signalling, UDP ICE, the relay
    specs = [f"{proto}:{port}" for proto, port in sorted(bound)]
    inner = [spec for spec in specs if spec != f"{relay[0]}:{relay[1]}"]
    (stop,) = [line.split("=", 1)[1] for line in files["etc/systemd/system/pi-stream-firewall.service"].splitlines()
               if line.startswith("ExecStop=")]
    stop_argv = ["nft", *stop.split()[1:]]

    listener = subprocess.Popen(["ip", "netns", "exec", pi, sys.executable, "-c", LISTENER, *specs],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready", listener.stderr.read()

        def reachable(namespace: str, address: str) -> dict[str, bool]:
            return json.loads(run("ip", "netns", "exec", namespace, sys.executable, "-c", PROBE, address, *specs).stdout)

        assert all(reachable(peer, PI_ADDRESS).values()), "no firewall yet: the probe must reach every listener"
        load = subprocess.run(["ip", "netns", "exec", pi, "nft", "-f", "-"], input=files["etc/pi-stream/firewall.nft"],
                              capture_output=True, text=True, timeout=60)
        assert load.returncode == 0, load.stderr
        for state, commands in (("firewall loaded", []), ("firewall unit stopped", [stop_argv])):
            for command in commands:
                run("ip", "netns", "exec", pi, *command)
            seen = reachable(peer, PI_ADDRESS)
            assert seen[f"{relay[0]}:{relay[1]}"], f"{state}: the TCP relay must answer viewers"
            assert not [spec for spec in inner if seen[spec]], f"{state}: OME's inner ports reached from another host: {seen}"
            assert all(reachable(pi, "127.0.0.1").values()), f"{state}: the Pi itself (nginx, verify) must reach them all"
        tables = run("ip", "netns", "exec", pi, "nft", "list", "tables").stdout.splitlines()
        assert tables == ["table inet pi_stream_ome"], tables
    finally:
        listener.kill()
        listener.wait(timeout=10)
