"""Rendered configs checked by the real programs: nginx -t, nft -c, fail2ban-regex/-client -t, systemd-analyze."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pi_stream.render import DEFAULT_PATHS, render_site
from pi_stream.site import load_site
from tests.conftest import EXAMPLE_SITES

FAIL2BAN_SAMPLES = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/nginx-http-auth")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/install.sh (CI installs them)")


def rooted_paths(root: Path) -> dict[str, str]:
    """Every path the templates write, moved under root; system files nginx only reads stay put."""
    keep = {"nginx_modules_include", "nginx_mime_types", "ffmpeg", "rpicam_vid", "nft", "font"}
    paths = {key: value if key in keep or not value else f"{root}{value}" for key, value in DEFAULT_PATHS.items()}
    paths["nginx_temp_dir"] = str(root / "var/lib/nginx")
    return paths


def install_tree(make_site, example: str, root: Path) -> Path:
    site = load_site(make_site(example))
    bundle = render_site(site, rooted_paths(root))
    host = sorted(bundle)[0]
    for target, file in bundle[host].items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    return site.directory


@pytest.mark.parametrize("example", sorted(EXAMPLE_SITES))
def test_nginx_accepts_the_rendered_tree(make_site, example, tmp_path):
    need("nginx", "openssl")
    assert RTMP_MODULE.exists(), "libnginx-mod-rtmp is not installed"
    root = tmp_path / "root"
    site_dir = install_tree(make_site, example, root)
    for sub in ("var/log/nginx", "var/lib/nginx", "run/pi-stream/hls", "etc/pi-stream/tls"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(site_dir / "viewers.htpasswd", root / "etc/nginx/pi-stream/viewers.htpasswd")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-keyout", str(root / "etc/pi-stream/tls/key.pem"),
         "-out", str(root / "etc/pi-stream/tls/cert.pem")],
        check=True, capture_output=True, timeout=30,
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(root / "etc/nginx/nginx.conf")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "rtmp" in (root / "etc/nginx/nginx.conf").read_text()


def test_nft_accepts_the_firewall_and_keeps_ssh_open(make_site, tmp_path):
    need("nft")
    install_tree(make_site, "two-pis", tmp_path)
    ruleset = tmp_path / "etc/pi-stream/firewall.nft"
    result = subprocess.run(["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "tcp dport { 22, 80, 443 } accept" in ruleset.read_text()
    assert "flush ruleset" not in ruleset.read_text(), "must never remove fail2ban's table"


def fail2ban_cases() -> list[tuple[str, str | None]]:
    """(log line, expected banned address or None) from fail2ban's own annotated samples, auth section."""
    cases, expected = [], None
    for line in FAIL2BAN_SAMPLES.read_text().splitlines():
        if line.startswith("# filterOptions") and "auth" not in line and "normal" not in line:
            break  # later sections are for other modes of the stock filter
        if line.startswith("# failJSON:"):
            data = json.loads(line.split(":", 1)[1])
            expected = data.get("host") if data.get("match") else None
        elif line and not line.startswith("#"):
            cases.append((line, expected))
    return cases


def test_fail2ban_filter_bans_the_real_client_not_a_forged_one(make_site, tmp_path):
    need("fail2ban-regex")
    install_tree(make_site, "testsrc-https", tmp_path)
    filter_file = tmp_path / "etc/fail2ban/filter.d/pi-stream-auth.conf"
    cases = fail2ban_cases()
    assert any("injection" in FAIL2BAN_SAMPLES.read_text() for _ in cases) and len(cases) >= 6
    our_lines = [
        ('2026/11/23 08:00:00 [error] 812#812: *41 user "alice": password mismatch, client: 192.0.2.7, '
         'server: _, request: "GET /hls/cam/index.m3u8 HTTP/1.1", host: "10.213.0.2"', "192.0.2.7"),
        ('2026/11/23 08:00:01 [error] 812#812: *42 user "x\\", client: 6.6.6.6, server: a": was not found in '
         '"/etc/nginx/pi-stream/viewers.htpasswd", client: 192.0.2.8, server: _, request: "GET / HTTP/1.1", '
         'host: "pi"', "192.0.2.8"),
        ('2026/11/23 08:00:02 [error] 812#812: *43 open() "/var/www/pi-stream/x" failed (2: No such file), '
         'client: 192.0.2.9, server: _, request: "GET /x HTTP/1.1", host: "pi"', None),
    ]
    for line, expected in cases + our_lines:
        result = subprocess.run(
            ["fail2ban-regex", "-o", "ip", line, str(filter_file)], capture_output=True, text=True, timeout=60
        )
        found = result.stdout.strip() or None
        assert found == expected, f"{line!r}: matched {found!r}, expected {expected!r}"


def test_fail2ban_client_accepts_the_jail(make_site, tmp_path):
    """`fail2ban-client -t` over Debian's config plus ours: the check the role's handler runs."""
    need("fail2ban-client")
    install_tree(make_site, "testsrc-https", tmp_path / "root")
    config = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", config)
    for sub in ("filter.d/pi-stream-auth.conf", "jail.d/pi-stream.local"):
        shutil.copy(tmp_path / "root/etc/fail2ban" / sub, config / sub)
    log = tmp_path / "root/var/log/nginx/error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    result = subprocess.run(
        ["fail2ban-client", "-c", str(config), "-t"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("example", ["testsrc-https", "mixed-http"])
def test_systemd_units_verify(make_site, example, tmp_path):
    need("systemd-analyze")
    install_tree(make_site, example, tmp_path)
    unit_dir = tmp_path / "etc/systemd/system"
    cameras = [c.name for c in load_site(make_site(example)).cameras]
    units = [f"pi-stream-camera@{name}.service" for name in cameras] + ["pi-stream-firewall.service"]
    # systemd-analyze checks that ExecStart's program exists: point missing ones at a stand-in.
    text_fixes = {"/usr/bin/rpicam-vid": "/bin/true"}
    for conf in unit_dir.rglob("*.conf"):
        text = conf.read_text()
        for old, new in text_fixes.items():
            text = text.replace(old, new)
        conf.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
