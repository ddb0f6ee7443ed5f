"""Rendered configs checked by the real programs: nginx -t, nft -c, fail2ban-regex/-client -t, systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITES
from tests.configs.tree import install_auth_secrets, install_tree, make_certificate

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/install.sh (CI installs them)")


@pytest.mark.parametrize("example", sorted(EXAMPLE_SITES))
def test_nginx_accepts_the_rendered_tree(make_site, example, short_root):
    need("nginx", "openssl")
    assert RTMP_MODULE.exists(), "libnginx-mod-rtmp is not installed"
    root = short_root
    site_dir = install_tree(make_site, example, root)
    # What the roles create before nginx starts (dvr_proxy: the cache root).
    for sub in ("var/log/nginx", "var/log/pi-stream", "var/lib/nginx", "run/pi-stream/hls", "var/cache/pi-stream/dvr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    install_auth_secrets(site_dir, root)
    make_certificate(root)
    result = subprocess.run(
        ["nginx", "-t", "-c", str(root / "etc/nginx/nginx.conf")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "rtmp" in (root / "etc/nginx/nginx.conf").read_text()


@pytest.mark.parametrize(
    ("example", "open_ports", "private_ports"),
    [("two-pis", "22", "80, 443"), ("dvr", "22", "80, 443, 7682, 8443, 9443"), ("webrtc", "22, 80, 443, 3478", "")],
)
def test_nft_accepts_the_firewall_and_keeps_ssh_open(make_site, tmp_path, example, open_ports, private_ports):
    """SSH always; on a lan site the web ports from private addresses only; a port_forward site opens them to all."""
    need("nft")
    install_tree(make_site, example, tmp_path)
    ruleset = tmp_path / "etc/pi-stream/firewall.nft"
    result = subprocess.run(["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in ruleset.read_text().splitlines()]
    assert f"tcp dport {{ {open_ports} }} accept" in lines
    private = [line for line in lines if line.endswith(f"tcp dport {{ {private_ports} }} accept") and "saddr" in line]
    if private_ports:
        assert private == [
            f"ip saddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16 }} tcp dport {{ {private_ports} }} accept",
            f"ip6 saddr {{ fc00::/7, fe80::/10 }} tcp dport {{ {private_ports} }} accept",
        ]
    else:
        assert not [line for line in lines if "saddr {" in line]
    assert "flush ruleset" not in ruleset.read_text(), "must never remove fail2ban's table"
    # The proxied DVRs are isolated both ways through this host, whatever the address family.
    forward = [line.strip() for line in ruleset.read_text().splitlines() if line.strip().endswith(" drop") and "addr " in line]
    dvrs = [("ip", "192.168.100.64"), ("ip6", "fd00::64")] if example == "dvr" else []
    assert forward == [f"{family} {way} {address} drop" for family, address in dvrs for way in ("daddr", "saddr")]


AUTH_LOG_LINES = [
    # (filter, line, address fail2ban must ban or None)
    ("pi-stream-auth", "2026-11-23T08:00:00+00:00 login-failed client=192.0.2.7 status=401", "192.0.2.7"),
    ("pi-stream-auth", "2026-11-23T08:00:00+00:00 login-failed client=2001:db8::7 status=401", "2001:db8::7"),
    ("pi-stream-auth", "2026-11-23T08:00:00+00:00 media-refused client=192.0.2.7 status=403", None),
    ("pi-stream-auth", "2026-11-23T08:00:00+00:00 login-failed client=192.0.2.7 status=200", None),
    ("pi-stream-media", "2026-11-23T08:00:01+00:00 media-refused client=192.0.2.8 status=403", "192.0.2.8"),
    ("pi-stream-media", "2026-11-23T08:00:01+00:00 media-refused client=192.0.2.8 status=429", None),
    ("pi-stream-media", "2026-11-23T08:00:01+00:00 login-failed client=192.0.2.8 status=401", None),
    ("pi-stream-dvr", "2026-11-23T08:00:02+00:00 dvr-login-failed dvr=shed client=192.0.2.9 status=401", "192.0.2.9"),
    ("pi-stream-dvr", "2026-11-23T08:00:02+00:00 dvr-login-failed dvr=shed client=192.0.2.9 status=429", None),
    ("pi-stream-dvr", "2026-11-23T08:00:02+00:00 login-failed client=192.0.2.9 status=401", None),
    ("pi-stream-auth", "2026-11-23T08:00:02+00:00 dvr-login-failed dvr=shed client=192.0.2.9 status=401", None),
    # A forged line (as if a client could write into the log) must not match: the format is fixed.
    ("pi-stream-media", "2026-11-23T08:00:01+00:00 media-refused client=6.6.6.6 client=192.0.2.9 status=403", None),
]


@pytest.mark.parametrize(("filter_name", "line", "expected"), AUTH_LOG_LINES)
def test_fail2ban_filters_ban_only_failures(make_site, tmp_path, filter_name, line, expected):
    need("fail2ban-regex")
    install_tree(make_site, "testsrc-https", tmp_path)
    filter_file = tmp_path / f"etc/fail2ban/filter.d/{filter_name}.conf"
    result = subprocess.run(["fail2ban-regex", "-o", "ip", line, str(filter_file)], capture_output=True, text=True, timeout=60)
    assert (result.stdout.strip() or None) == expected, result.stdout + result.stderr


@pytest.mark.parametrize("example", ["testsrc-https", "dvr", "relay"])
def test_fail2ban_client_accepts_the_jail(make_site, tmp_path, example):
    """`fail2ban-client -t` over Debian's config plus ours: the check the role's handler runs."""
    need("fail2ban-client")
    install_tree(make_site, example, tmp_path / "root")
    config = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", config)
    rendered = tmp_path / "root/etc/fail2ban"
    subs = sorted(str(p.relative_to(rendered)) for p in rendered.rglob("*.*") if p.is_file())
    assert {"action.d/pi-stream-nftables.conf", "filter.d/pi-stream-auth.conf", "jail.d/pi-stream.local"} <= set(subs)
    for sub in subs:
        shutil.copy(rendered / sub, config / sub)
    log = tmp_path / "root/var/log/pi-stream/auth.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    result = subprocess.run(
        ["fail2ban-client", "-c", str(config), "-t"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if example == "relay":
        # The Pi of a relay site: every jail, sshd's too, leaves the relays' tunnel addresses alone.
        dump = subprocess.run(["fail2ban-client", "-c", str(config), "-d"], capture_output=True, text=True, timeout=60).stdout
        ignored = [line for line in dump.splitlines() if "'addignoreip'" in line]
        for jail in ("sshd", "pi-stream-auth", "pi-stream-media", "pi-stream-dvr"):
            assert any(line.startswith(f"['set', '{jail}', 'addignoreip', ") and line.endswith("'10.77.0.1', '10.77.0.2']")
                       for line in ignored), (jail, ignored)


@pytest.mark.parametrize("example", ["testsrc-https", "mixed-http", "nvr"])
def test_systemd_units_verify(make_site, example, tmp_path):
    need("systemd-analyze")
    install_tree(make_site, example, tmp_path)
    unit_dir = tmp_path / "etc/systemd/system"
    units = sorted(p.name for p in unit_dir.iterdir() if p.suffix in (".service", ".socket", ".timer"))
    assert {"pi-stream-capture.service", "pi-stream-retention.timer", "pi-stream-auth.service"} <= set(units)
    result = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


UPDATE_POLICIES = {
    "default": ({}, {"Unattended-Upgrade": "1", "Automatic-Reboot": "true"}),
    "no reboot": ({"reboot": False}, {"Unattended-Upgrade": "1", "Automatic-Reboot": "false"}),
    "off": ({"security": False, "time": "23:30"}, {"Unattended-Upgrade": "0", "Automatic-Reboot": "true"}),
}


@pytest.mark.parametrize("policy", sorted(UPDATE_POLICIES))
def test_apt_needrestart_and_systemd_accept_the_update_policy(make_site, tmp_path, policy):
    """What the security_updates role's `validate:` runs (apt-config, perl -c), and systemd's reading of the time."""
    need("apt-config", "perl", "systemd-analyze")
    updates, expected = UPDATE_POLICIES[policy]
    install_tree(make_site, "testsrc-https", tmp_path, updates=updates)
    policy_file = tmp_path / "etc/apt/apt.conf.d/52pi-stream-security-updates"
    dump = subprocess.run(["apt-config", "-c", str(policy_file), "dump"], capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    values = dict(line.rstrip(";").split(" ", 1) for line in dump.stdout.splitlines() if " " in line)
    assert values["APT::Periodic::Unattended-Upgrade"] == f'"{expected["Unattended-Upgrade"]}"'
    assert values["Unattended-Upgrade::Automatic-Reboot"] == f'"{expected["Automatic-Reboot"]}"'
    origins = [line.split(" ", 1)[1] for line in dump.stdout.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")]
    # Debian's security archive, and Raspbian's main suite (32-bit Raspberry Pi OS has no security suite): nothing else.
    assert [o for o in origins if "label=Debian-Security" not in o] == ['"origin=Raspbian,codename=${distro_codename},label=Raspbian";'], origins
    assert len(origins) == 3, origins
    assert '"--force-confold"' in dump.stdout, "a security fix to a package whose conffile pi-stream changed must not wait forever"
    needrestart = subprocess.run(["perl", "-c", str(tmp_path / "etc/needrestart/conf.d/pi-stream.conf")],
                                 capture_output=True, text=True, timeout=30)
    assert needrestart.returncode == 0, needrestart.stderr
    timer = (tmp_path / "etc/systemd/system/apt-daily-upgrade.timer.d/pi-stream.conf").read_text()
    (calendar,) = [line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar=") and line != "OnCalendar="]
    normalized = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=30)
    assert normalized.returncode == 0 and f"*-*-* {updates.get('time', '04:00')}:00" in normalized.stdout, normalized.stderr


def test_apt_refuses_a_broken_policy(tmp_path):
    """The validator the role relies on does fail: a policy that does not parse never reaches /etc/apt."""
    broken = tmp_path / "52broken"
    broken.write_text('Unattended-Upgrade::Automatic-Reboot "true"\nAPT::Periodic {\n')
    assert subprocess.run(["apt-config", "-c", str(broken), "dump"], capture_output=True, timeout=30).returncode != 0
