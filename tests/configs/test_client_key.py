"""The key of nginx's per-client limits: the address for IPv4, the /64 for IPv6, read by real nginx.

One IPv6 host (or home) usually holds a whole /64: keyed on the address, each of its 2^64 addresses would get a
bucket of its own. nginx 1.22 has no substring, so http.conf's `map $remote_addr $pi_stream_client` works on the
address's text; this test runs that very map in a real nginx, the client address set through the realip module,
over every way nginx can write an address of a /64 (each group of the prefix and of the interface ID zero or not,
so "::" falls before, inside and across the prefix).
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import random
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.configs.tree import install_tree, port_open

MAP_BLOCK = re.compile(r"^map \$remote_addr \$pi_stream_client \{\n.*?^\}\n", re.MULTILINE | re.DOTALL)


def groups_with_zeros(nonzero: tuple[int, int, int, int]) -> list[tuple[int, ...]]:
    """Every choice of zero or the given value for each of four groups."""
    return [tuple(v if keep else 0 for v, keep in zip(nonzero, mask, strict=True)) for mask in itertools.product((0, 1), repeat=4)]


def address(prefix: tuple[int, ...], iid: tuple[int, ...]) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int("".join(f"{g:04x}" for g in (*prefix, *iid)), 16))


# The all-zero ::/64 is left out: it holds the IPv4-mapped and -compatible forms, which nginx writes dotted
# (::ffff:192.0.2.1) and the map keys per address, like IPv4 (checked below).
PREFIXES = [p for p in groups_with_zeros((0x2001, 0xDB8, 0xA, 0xFFFF)) if any(p)] + [(0xFE80, 0, 0, 0), (0xFD12, 0x3456, 0x789A, 1)]
IIDS = groups_with_zeros((1, 0x20, 0x300, 0xABCD)) + groups_with_zeros((0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF))
random.seed(64)
IIDS += [tuple(random.choice((0, random.randrange(1, 0x10000))) for _ in range(4)) for _ in range(12)]


@pytest.fixture
def key_server(make_site, short_root):
    """nginx with the rendered map, answering each request with $pi_stream_client for the X-Forwarded-For address."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx not installed: run scripts/install.sh")
    install_tree(make_site, "testsrc-https", short_root)
    rendered = (short_root / "etc/nginx/pi-stream/http.conf").read_text()
    block = MAP_BLOCK.search(rendered)
    assert block, "http.conf has no `map $remote_addr $pi_stream_client`"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    test_root = short_root / "key"
    test_root.mkdir()
    (test_root / "client.conf").write_text(block.group(0))
    conf = test_root / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process off;
pid {test_root}/nginx.pid;
error_log {test_root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {test_root}/body;
    proxy_temp_path {test_root}/proxy;
    fastcgi_temp_path {test_root}/fastcgi;
    uwsgi_temp_path {test_root}/uwsgi;
    scgi_temp_path {test_root}/scgi;
    include {test_root}/client.conf;
    server {{
        listen 127.0.0.1:{port};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        location / {{
            default_type application/octet-stream;
            return 200 "$pi_stream_client";
        }}
    }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open(port) or nginx.poll() is not None, "the test nginx", seconds=10, interval=0.05)
        assert nginx.poll() is None, nginx.stderr.read().decode()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def key(client: str) -> bytes:
            connection.request("GET", "/", headers={"X-Forwarded-For": client})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (client, response.status)
            return body

        yield key
        connection.close()
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def test_every_address_of_a_64_has_its_prefix_as_key(key_server):
    keys: dict[tuple[int, ...], set[bytes]] = {}
    assert len(PREFIXES) * len(IIDS) > 600
    for prefix in PREFIXES:
        expected = ":".join(f"{g:x}" for g in prefix).encode()
        for iid in IIDS:
            client = address(prefix, iid).compressed
            got = key_server(client)
            assert got == expected, f"{client}: key {got!r}, expected {expected!r} (its /64)"
            keys.setdefault(prefix, set()).add(got)
    assert all(len(found) == 1 for found in keys.values())
    assert len({found.pop() for found in keys.values()}) == len(PREFIXES), "two /64s share a key"


def test_the_forms_cover_every_place_of_the_double_colon():
    """The addresses above include "::" before, inside, across and after the prefix, and none."""
    forms = {address(p, i).compressed for p in PREFIXES for i in IIDS}
    assert any(f.startswith("::") and f.count(":") == 7 for f in forms)  # "::" then six groups: two in the prefix
    assert any(re.match(r"^[0-9a-f]+::([0-9a-f]+:){4}[0-9a-f]+$", f) for f in forms)  # one group, "::", five
    assert any("::" not in f for f in forms)
    assert any(f.endswith("::") for f in forms)


@pytest.mark.parametrize(
    ("client", "key"),
    [
        ("192.0.2.1", socket.inet_pton(socket.AF_INET, "192.0.2.1")),
        ("192.0.2.2", socket.inet_pton(socket.AF_INET, "192.0.2.2")),
        ("::ffff:192.0.2.1", socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.1")),
        ("::ffff:192.0.2.2", socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.2")),
    ],
    ids=["ipv4", "another-ipv4", "ipv4-mapped", "another-ipv4-mapped"],
)
def test_ipv4_keeps_a_key_per_address(key_server, client, key):
    assert key_server(client) == key


def test_every_per_client_zone_uses_the_key(make_site, tmp_path):
    """limit_conn_zone (nginx.conf) and every limit_req_zone (http.conf) key on $pi_stream_client, nothing else."""
    install_tree(make_site, "dvr", tmp_path)
    text = "\n".join(Path(tmp_path / f).read_text() for f in ("etc/nginx/nginx.conf", "etc/nginx/pi-stream/http.conf"))
    zones = re.findall(r"^\s*(limit_(?:conn|req)_zone) (\S+) zone=(\w+)", text, re.MULTILINE)
    assert {("limit_conn_zone", "pi_stream_addr"), ("limit_req_zone", "pi_stream_login"),
            ("limit_req_zone", "pi_stream_refusals")} <= {(directive, zone) for directive, _, zone in zones}
    assert {key for _, key, _ in zones} == {"$pi_stream_client"}, zones
