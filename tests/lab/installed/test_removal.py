"""Removing pi-stream from a Pi (issue 24): afterwards no unit, file, user or firewall table of pi-stream's is left,
SSH still answers, and removing again changes nothing.

The module deploys its own site (it does not rely on what the modules before it left): a camera with snapshots on
disk, the viewer login, fail2ban, the firewall, a proxied DVR with an asset cache, security updates, and footage in
storage.recordings_path (written on the Pi as the capture's user: recording needs an RTSP source, and this stands
for a camera that recorded and was taken out of site.yml since). Then it
removes pi-stream twice over: first keeping the packages (nginx back on Debian's configuration), then fully, then
once more to see nothing change. Not exercised here: WebRTC (OvenMediaEngine), relays (WireGuard), nginx built
from source; tests/unit/test_remove.py covers their files, units and packages.

The removal is the installed `pi-stream remove --yes` when the installed CLI has it, else pi_stream.remove in-process.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pi_stream.console import Console
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import write_site
from tests.lab.conftest import REPO, ssh

pytestmark = pytest.mark.lab

RECORDINGS = "/srv/recordings"
SITE = {
    "name": "removal",
    "storage": {"recordings_path": RECORDINGS, "recordings_on_root_fs": True},
    "cameras": [{"name": "yard", "source": {"type": "testsrc"}, "snapshots": {"interval_seconds": 2}}],
    "dvr_proxy": {"shed": {"host": "192.0.2.64", "server_name": "dvr.example.org"}},
}
# Every path on the Pi named after pi-stream, but the lab's own (pi_stream/lab/rootfs.py: *pi-stream-lab*).
NAMED = r"\( -name '*pi-stream*' -o -name '*pi_stream*' -o -name '*pistream*' \) -not -name '*pi-stream-lab*'"


def on_pi(lab_state, command: str, timeout: float = 120) -> str:
    result = ssh(lab_state, "pi1", command, timeout=timeout)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def lines(lab_state, command: str) -> list[str]:
    return [line for line in on_pi(lab_state, command).splitlines() if line.strip()]


def state_of(lab_state, bundle_paths: list[str]) -> dict:
    """What of pi-stream's the Pi has: units, the bundle's files, users, tables, files named after it, orphans."""
    existing = f"for p in {shlex.join(bundle_paths)}; do [ -e \"$p\" ] && echo \"$p\"; done; true"
    return {
        "units": lines(lab_state, "systemctl list-unit-files --no-legend --plain 'pi-stream*' 'wg-quick@pistream*'; "
                                  "systemctl list-units --all --no-legend --plain 'pi-stream*' 'wg-quick@pistream*' "
                                  "| grep -v ' not-found inactive dead '; true"),
        "unloading": lines(lab_state, "systemctl list-units --all --no-legend --plain 'pi-stream*' | grep ' not-found '; true"),
        "files": lines(lab_state, existing),
        "users": lines(lab_state, "getent passwd pi-stream; getent group pi-stream; true"),
        "tables": [t for t in lines(lab_state, "command -v nft >/dev/null && nft list tables; true") if "pi_stream" in t or "f2b" in t],
        "named": lines(lab_state, f"find / /run -xdev {NAMED} -print 2>/dev/null; true"),
        "orphans": lines(lab_state, "find / /run -xdev \\( -nouser -o -nogroup \\) -print 2>/dev/null; true"),
    }


def units_unloaded(lab_state, seconds: float = 120) -> list[str]:
    """The units systemd still lists, once it had `seconds` to let go of them; [] when it did.

    A removed unit whose file is gone stays listed as "not-found inactive dead" until systemd collects it: at
    once for most, but in the lab's container the long-running services (capture, login) have been seen to
    linger for a minute or more after the removal. Nothing of them is on disk or running meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := state_of(lab_state, [])["unloading"]) and time.monotonic() < deadline:
        time.sleep(5)
    return left


def installed_packages(lab_state, *names: str) -> dict[str, str]:
    out = on_pi(lab_state, "dpkg-query --show --showformat='${Package} ${db:Status-Status}\\n' " + " ".join(names) + " 2>/dev/null; true")
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def deployed(installed_lab, installed, tmp_path_factory):
    """A site deployed to pi1 by the installed pi-stream, with a recording and snapshots on disk."""
    directory = write_site(tmp_path_factory.mktemp("removal") / "site", SITE)
    installed_lab.write_inventory(directory / "inventory.yml")
    # Whatever the Pi has now (a fresh lab Pi, or the modules before this one deployed another site to it),
    # removal needs no bundle of that site: it empties the Pi, or finds nothing to do.
    fresh = not any(state_of(installed_lab, []).values())
    first = remove(installed_lab, installed, load_site(directory))
    if fresh:  # run alone: a Pi that never had pi-stream
        assert first["stats"]["changed"] == 0, first["changed"]
    started = time.monotonic()
    result = installed.run("pi-stream", "deploy", str(directory), timeout=1800)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    print(f"deploy: {time.monotonic() - started:.0f} s")
    # What the capture writes when a camera records: SITE/CAMERA/DAY/TIME.mp4, as its user.
    day = f"{RECORDINGS}/removal/gate/2026-01-01"
    on_pi(installed_lab, f"install -d -o pi-stream -g pi-stream {RECORDINGS} {RECORDINGS}/removal {RECORDINGS}/removal/gate {day}"
                         f" && head -c 4096 /dev/urandom > {day}/120000.mp4 && chown pi-stream:pi-stream {day}/120000.mp4")
    deadline = time.monotonic() + 60
    while not lines(installed_lab, "find /srv/pi-stream/snapshots -name '*.jpg'; true") and time.monotonic() < deadline:
        time.sleep(2)
    site = load_site(directory)
    paths = ["/" + target for target in render_site(site)["pi1"]]
    return site, paths


def remove(installed_lab, installed, site, keep_packages: bool = False) -> dict:
    """pi-stream removed from the site's Pi; the run's stats per host (from its events)."""
    installed_lab.write_inventory(site.directory / "inventory.yml",
                                  extra_vars={"pi_stream_keep_packages": True} if keep_packages else None)
    runs = site.directory / ".pi-stream" / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    started = time.monotonic()
    if installed.run("pi-stream", "remove", "--help").returncode == 0:
        result = installed.run("pi-stream", "remove", "--yes", str(site.directory), timeout=1800)
        output = result.stdout[-3000:] + result.stderr[-3000:]
    else:
        from pi_stream.remove import run_remove

        result = run_remove(load_site(site.directory), Console(show_progress=False))
        output = str(result.failures)
    print(f"removal{' (packages kept)' if keep_packages else ''}: {time.monotonic() - started:.0f} s")
    (run,) = set(runs.iterdir()) - before
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.startswith("{")]
    stats = [e for e in events if e["event"] == "stats"]
    assert stats, output
    hosts = stats[-1]["hosts"]
    assert hosts["pi1"].get("failures", 0) == 0 and hosts["pi1"].get("unreachable", 0) == 0, output
    changed = [f"{e['task']}: {e.get('message') or ''}"[:200] for e in events if e["event"] in ("ok", "item_ok") and e.get("changed")]
    return {"stats": hosts["pi1"], "changed": changed,
            "notes": [e.get("message") for e in events if e.get("action", "").endswith("debug")]}


def test_the_deployed_pi_has_what_removal_must_find(deployed, installed_lab):
    """Not vacuous: before removal the Pi has every unit, file, user and table the checks below look for."""
    site, paths = deployed
    before = state_of(installed_lab, paths)
    assert before["files"] == paths, sorted(set(paths) - set(before["files"]))
    units = " ".join(before["units"])
    for unit in ("pi-stream-capture.service", "pi-stream-auth.socket", "pi-stream-retention.timer", "pi-stream-firewall.service"):
        assert unit in units
    assert len(before["users"]) == 2
    assert "table inet pi_stream" in before["tables"]
    named = before["named"]
    for path in ("/etc/pi-stream", "/var/cache/pi-stream", "/srv/pi-stream", "/var/log/pi-stream", "/run/pi-stream"):
        assert path in named, path
    assert lines(installed_lab, f"find {RECORDINGS} -name '*.mp4' -user pi-stream")
    assert lines(installed_lab, "find /srv/pi-stream/snapshots -name '*.jpg' -user pi-stream"), "no snapshot on disk"
    # The login service's credentials: systemd's copies for its DynamicUser, gone when it stops.
    assert [p for p in before["orphans"] if not p.startswith("/run/credentials/pi-stream-auth.service")] == []


def test_plain_ansible_playbook_in_check_mode_changes_nothing_on_the_pi(deployed, installed_lab):
    """docs/removing.md: the playbook needs only an inventory, and --check shows what it would do."""
    site, paths = deployed
    before = state_of(installed_lab, paths)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(site.directory / "inventory.yml"),
         "playbooks/remove.yml", "--check"],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert re.search(r"pi1\s+: ok=\d+\s+changed=[1-9]", result.stdout), result.stdout[-2000:]  # it would remove things
    after = state_of(installed_lab, paths)

    def lasting(state: dict) -> dict:
        """The state without the login service's credentials (there while socket activation has it running)."""
        return {key: [v for v in values if not v.startswith("/run/credentials/")] for key, values in state.items()}

    assert lasting(after) == lasting(before)


def test_removal_keeping_the_packages_puts_nginx_back_on_debians_configuration(deployed, installed_lab, installed):
    site, paths = deployed
    run = remove(installed_lab, installed, site, keep_packages=True)
    assert run["stats"]["changed"] > 0
    after = state_of(installed_lab, paths)
    assert after["units"] == [] and after["users"] == [] and after["orphans"] == []
    assert not [t for t in after["tables"] if "pi_stream" in t]
    # nginx.conf is nginx-common's again (the one bundle path that stays), and nginx serves Debian's page.
    assert after["files"] == ["/etc/nginx/nginx.conf"]
    assert "pi-stream" not in on_pi(installed_lab, "cat /etc/nginx/nginx.conf")
    assert on_pi(installed_lab, "systemctl is-active nginx").strip() == "active"
    address = installed_lab.hosts[0].address
    with urllib.request.urlopen(f"http://{address}/", timeout=10) as response:  # no firewall table left to refuse it
        assert b"Welcome to nginx" in response.read()
    packages = installed_packages(installed_lab, "nginx", "libnginx-mod-rtmp", "fail2ban")
    assert packages == {"nginx": "installed", "libnginx-mod-rtmp": "installed", "fail2ban": "installed"}
    # fail2ban without pi-stream's jails: Debian 12's own sshd jail does not start (the run says so), or it runs.
    fail2ban = on_pi(installed_lab, "systemctl is-active fail2ban; systemctl is-enabled fail2ban; true").split()
    assert fail2ban in (["active", "enabled"], ["inactive", "disabled"]), fail2ban
    if fail2ban[0] == "inactive":
        assert any("fail2ban stays installed but stopped" in (note or "") for note in run["notes"]), run["notes"]
    assert lines(installed_lab, f"find {RECORDINGS} -name '*.mp4' -user root"), "the recordings were not kept for root"


def test_removal_leaves_no_unit_file_user_table_or_package_of_pi_streams(deployed, installed_lab, installed):
    site, paths = deployed
    run = remove(installed_lab, installed, site)
    assert run["stats"]["changed"] > 0  # the packages, this time
    after = state_of(installed_lab, paths)
    assert after["units"] == [], after["units"]
    assert units_unloaded(installed_lab) == []
    assert after["files"] == [], after["files"]
    assert after["users"] == [], after["users"]
    assert after["tables"] == [], after["tables"]  # f2b-table went with fail2ban
    assert after["orphans"] == [], after["orphans"]
    # Nothing named after pi-stream anywhere but the kept recordings' site directory.
    assert [p for p in after["named"] if not p.startswith(RECORDINGS + "/")] == [], after["named"]
    packages = installed_packages(installed_lab, "nginx", "nginx-common", "libnginx-mod-rtmp", "fail2ban", "ffmpeg",
                                  "nftables", "unattended-upgrades")
    assert {p: s for p, s in packages.items() if s != "not-installed"} == {
        "ffmpeg": "installed", "nftables": "installed", "unattended-upgrades": "installed"}
    # Nothing of the appliance listens any more; SSH does, and answers this very command.
    listening = {line.split()[3].rsplit(":", 1)[1] for line in lines(installed_lab, "ss -ltnH")}
    assert not listening & {"80", "443", "1935", "8443"}, listening
    assert on_pi(installed_lab, "systemctl is-active ssh").strip() == "active"
    assert "pi-stream" not in on_pi(installed_lab, "systemctl cat apt-daily-upgrade.timer")
    # The footage stays, root's now.
    assert lines(installed_lab, f"find {RECORDINGS} -name '*.mp4' -user root")


def test_removing_again_changes_nothing(deployed, installed_lab, installed):
    site, paths = deployed
    run = remove(installed_lab, installed, site)
    assert run["stats"]["changed"] == 0, run["changed"]
    assert state_of(installed_lab, paths)["units"] == []
    assert units_unloaded(installed_lab) == []
