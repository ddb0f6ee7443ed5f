"""fail2ban's bans through pi-stream's nftables action: an IPv6 address banned with its /64, IPv4 one by one.

A real fail2ban server with the rendered action and jails runs inside a network namespace this test makes, so
its nftables table is the namespace's own; `fail2ban-client set JAIL banip/unbanip` drives it, and `nft get
element` asks the kernel what is banned. Everything is stopped and the namespace removed on the way out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import pytest

from tests.conftest import wait_until
from tests.configs.tree import install_tree

JAIL = "pi-stream-auth"
TABLE = ("inet", "f2b-table")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("ip", "nft", "fail2ban-server", "fail2ban-client")):
        pytest.fail("needs root, ip, nft and fail2ban (scripts/install.sh; CI runs as root)")
    name = f"ps-f2b-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


@pytest.fixture
def fail2ban(make_site, short_root, namespace):
    """fail2ban-server (foreground) in the namespace: Debian's config, the rendered files, only the jail under test."""
    install_tree(make_site, "testsrc-https", short_root / "root")
    config = short_root / "fail2ban"
    shutil.copytree("/etc/fail2ban", config)
    for rendered in sorted(p for p in (short_root / "root/etc/fail2ban").rglob("*") if p.is_file()):
        shutil.copy(rendered, config / rendered.relative_to(short_root / "root/etc/fail2ban"))
    (config / "fail2ban.local").write_text(
        f"[Definition]\nlogtarget = {short_root}/f2b.log\nsocket = {short_root}/f2b.sock\n"
        f"pidfile = {short_root}/f2b.pid\ndbfile = :memory:\n"
    )
    # The sshd jail reads the journal; it is not what this test is about.
    (config / "jail.d/zz-test.local").write_text("[sshd]\nenabled = false\n[pi-stream-media]\nenabled = false\n")
    log = short_root / "root/var/log/pi-stream/auth.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    client = ["ip", "netns", "exec", namespace, "fail2ban-client", "-c", str(config)]
    server = subprocess.Popen([*client, "-f", "start"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: run(*client, "ping", check=False).returncode == 0 or server.poll() is not None, "fail2ban", seconds=30)
        assert server.poll() is None, (short_root / "f2b.log").read_text()

        def ctl(*args: str) -> str:
            return run(*client, *args).stdout

        yield ctl
        run(*client, "stop", check=False)
        server.wait(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def banned(namespace: str, address: str) -> bool:
    """Does the namespace's fail2ban table hold `address` (alone or within a prefix) in the jail's set?"""
    v6 = ":" in address
    family_set = f"pi-stream-addr{'6' if v6 else ''}-set-{JAIL}"
    query = run("ip", "netns", "exec", namespace, "nft", "get", "element", *TABLE, family_set, f"{{ {address} }}", check=False)
    return query.returncode == 0


def test_an_ipv6_ban_covers_its_64_and_an_ipv4_ban_one_address(fail2ban, namespace, short_root):
    fail2ban("set", JAIL, "banip", "2001:db8:1:2:aaaa::5")
    wait_until(lambda: banned(namespace, "2001:db8:1:2:aaaa::5"), "the IPv6 ban in nftables", seconds=20)
    assert all(banned(namespace, a) for a in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff")), "the rest of the /64"
    assert not any(banned(namespace, a) for a in ("2001:db8:1:3::5", "2001:db8:1:1:ffff:ffff:ffff:ffff")), "a neighbouring /64"
    chain = run("ip", "netns", "exec", namespace, "nft", "list", "chain", *TABLE, "f2b-chain").stdout
    assert f"ip6 saddr @pi-stream-addr6-set-{JAIL} reject" in chain, chain

    fail2ban("set", JAIL, "banip", "192.0.2.7")
    wait_until(lambda: banned(namespace, "192.0.2.7"), "the IPv4 ban in nftables", seconds=20)
    assert not banned(namespace, "192.0.2.8"), "an IPv4 ban is one address"

    # Two addresses of one /64 banned at once share the element: both unbans succeed, the /64 is free after.
    fail2ban("set", JAIL, "banip", "2001:db8:1:2::6")
    fail2ban("set", JAIL, "unbanip", "2001:db8:1:2:aaaa::5")
    wait_until(lambda: not banned(namespace, "2001:db8:1:2::1"), "the /64's unban", seconds=20)
    fail2ban("set", JAIL, "unbanip", "2001:db8:1:2::6", "192.0.2.7")
    wait_until(lambda: not banned(namespace, "192.0.2.7"), "the IPv4 unban", seconds=20)
    status = fail2ban("status", JAIL)
    assert "Currently banned:\t0" in status, status
    errors = [line for line in (short_root / "f2b.log").read_text().splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors)
