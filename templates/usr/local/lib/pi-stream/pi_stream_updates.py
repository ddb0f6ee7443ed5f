#!/usr/bin/python3
"""What this Pi's security updates look like: pending ones, a reboot due, services on old libraries.

Installed by pi-stream (role security_updates) and run as root by `pi-stream
verify` and `pi-stream status` over SSH: one JSON document on stdout, read
from the system's own records, nothing changed.

    python3 /usr/local/lib/pi-stream/pi_stream_updates.py

- pending: installed packages with a newer version in an archive the
  security policy names (unattended-upgrades' Origins-Pattern, read from apt's
  configuration and matched as unattended-upgrades matches it: Debian's
  security archive, or Raspbian's main suite on 32-bit Raspberry Pi OS).
  unattended-upgrades installs those, and only those.
- policy / sources / matched: the policy's patterns, this Pi's apt sources
  (origin, label, codename), and those the policy matches. None matched means
  nothing can ever be installed, whatever "pending" says.
- lists_updated / last_run: when apt last read the archives, and when
  unattended-upgrades last started a run that decided what to install; a
  security update still pending after a run that saw it means something holds
  it back (its log says what). apt-daily's `unattended-upgrade --download-only`
  writes the same log but logs nothing past its preamble: not an install run.
- running: unattended-upgrades is at work now (its log is already newer
  than the lists, but the run has not finished installing).
- reboot: /run/reboot-required, written by packages (a kernel) that need one.
- restart: services still running code an upgrade replaced (needrestart -b).
- nginx_source: nginx built from source (package pi-stream-nginx) is outside
  all of this; when Debian's security archive has a version of the same nginx
  line, that version carries fixes the build may lack.
"""

from __future__ import annotations

import fnmatch
import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path

REBOOT_REQUIRED = Path("/run/reboot-required")
REBOOT_PACKAGES = Path("/run/reboot-required.pkgs")
LISTS_DIR = Path("/var/lib/apt/lists")
UNATTENDED_LOG = Path("/var/log/unattended-upgrades/unattended-upgrades.log")
SOURCE_PACKAGE = "pi-stream-nginx"
COMMAND_TIMEOUT_SECONDS = 60


POLICY_KEY = "Unattended-Upgrade::Origins-Pattern"
# unattended-upgrades' keys for a pattern's fields, and the package file attribute each compares.
PATTERN_FIELDS = {"o": "origin", "origin": "origin", "l": "label", "label": "label", "a": "archive", "archive": "archive",
                  "suite": "archive", "c": "component", "component": "component", "n": "codename", "codename": "codename",
                  "site": "site"}


def distro() -> dict[str, str]:
    """${distro_id} and ${distro_codename}, as unattended-upgrades substitutes them (lsb_release; os-release without it)."""
    release = {}
    for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines() if Path("/etc/os-release").exists() else []:
        if "=" in line:
            key, value = line.split("=", 1)
            release[key] = value.strip().strip('"')
    distro_id = run(["lsb_release", "-i", "-s"]).strip() or release.get("NAME", "").split(" ")[0]
    codename = run(["lsb_release", "-c", "-s"]).strip() or release.get("VERSION_CODENAME", "")
    return {"distro_id": distro_id, "distro_codename": codename}


def matches(pattern: str, package_file, substitutions: dict[str, str]) -> bool:
    """unattended-upgrades' match of one Origins-Pattern line: every key=value (a glob) holds; "\\," is a comma."""
    pattern = pattern.strip()
    if not pattern:
        return False  # an empty pattern matches nothing, as in unattended-upgrades
    for token in pattern.replace("\\,", "%2C").split(","):
        what, _, value = (part.strip().replace("%2C", ",") for part in token.partition("="))
        attribute = PATTERN_FIELDS.get(what)
        if attribute is None:
            return False
        value = string.Template(value).safe_substitute(substitutions)
        if not fnmatch.fnmatchcase(getattr(package_file, attribute, "") or "", value):
            return False
    return True


def in_policy(package_file, policy: list[str], substitutions: dict[str, str]) -> bool:
    return any(matches(pattern, package_file, substitutions) for pattern in policy)


def describe(package_file) -> str:
    return f"origin={package_file.origin},label={package_file.label},codename={package_file.codename} ({package_file.site or 'local'})"


def sources(cache, policy: list[str], substitutions: dict[str, str]) -> tuple[list[str], list[str]]:
    """This Pi's apt sources (the dpkg status file is none), and those the policy matches."""
    seen, matched = set(), set()
    for package_file in cache.file_list:
        if package_file.archive == "now" or package_file.not_source:
            continue
        seen.add(describe(package_file))
        if in_policy(package_file, policy, substitutions):
            matched.add(describe(package_file))
    return sorted(seen), sorted(matched)


def upstream(version: str) -> str:
    """1.22.1 of 1.22.1-9+deb12u2 (an epoch, if any, dropped)."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def nginx_line(version: str) -> str:
    """The release line, 1.22 of 1.22.1."""
    return ".".join(upstream(version).split(".")[:2])


def security_versions(package, policy: list[str], substitutions: dict[str, str]) -> list[str]:
    """Versions of the package in an archive the security policy names."""
    return [v.ver_str for v in package.version_list if any(in_policy(f, policy, substitutions) for f, _ in v.file_list)]


def source_build_note(built: str, debian_security: list[str], version_compare) -> str | None:
    """The newest Debian security version of nginx in the line the source build runs, at or above its upstream release.

    Debian backports fixes into its own release of a line (1.22.1-9+deb12u2 is 1.22.1 plus fixes): a
    source build of 1.22.1 lacks them. A build of another line is judged by nginx.org's announcements, not here."""
    same_line = [v for v in debian_security if nginx_line(v) == nginx_line(built) and version_compare(upstream(v), upstream(built)) >= 0]
    return newest(same_line, version_compare)


def newest(versions: list[str], version_compare) -> str | None:
    """The highest of Debian version strings, by dpkg's ordering (not text order: 1.10 > 1.9)."""
    best = None
    for version in versions:
        if best is None or version_compare(version, best) > 0:
            best = version
    return best


def unattended_running() -> bool:
    """An unattended-upgrade process now (the timer's run, or apt-daily's), from /proc: no lock is taken."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        if any(arg.endswith(b"/unattended-upgrade") for arg in argv[:2]):
            return True
    return False


RUN_START = "Starting unattended upgrades script"
# What every run logs before it looks at a package; a download-only run logs nothing more.
PREAMBLE = ("Checking if system is running on battery", RUN_START, "Allowed origins are", "Initial blacklist",
            "Initial whitelist", "Enabled logging to syslog")


def last_install_run(log_text: str) -> float | None:
    """When the last run that got past its preamble started (the Pi's local time, as the log has it)."""
    run_start = last_decided = None
    for line in log_text.splitlines():
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            continue  # a continuation line
        message = line[24:].split(" ", 1)[-1]  # after "YYYY-mm-dd HH:MM:SS,mmm LEVEL "
        if message.startswith(RUN_START):
            run_start = stamp
        elif run_start is not None and not message.startswith(PREAMBLE):
            last_decided = run_start
    return last_decided


def newest_mtime(paths) -> float | None:
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else None


def run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def services_to_restart() -> list[str] | None:
    """Services needrestart finds running replaced code (None: needrestart is not installed)."""
    if not Path("/usr/sbin/needrestart").exists():
        return None
    output = run(["/usr/sbin/needrestart", "-b", "-r", "l"])
    return sorted(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("NEEDRESTART-SVC:"))


def timer_next_run() -> float | None:
    """When apt-daily-upgrade.timer fires next (None: not scheduled). list-timers' JSON gives microseconds
    since the epoch; `systemctl show` gives only a local date string."""
    try:
        timers = json.loads(run(["systemctl", "list-timers", "--all", "--output=json", "apt-daily-upgrade.timer"]) or "[]")
    except ValueError:
        return None
    upcoming = [t["next"] for t in timers if t.get("unit") == "apt-daily-upgrade.timer" and t.get("next")]
    return upcoming[0] / 1e6 if upcoming else None


def security_state(cache, policy: list[str], substitutions: dict[str, str], version_compare, architecture: str) -> dict:
    """What the policy would install from this cache: pending updates, the sources it matches, the source build's note."""
    pending = []
    built = None
    debian_nginx: list[str] = []
    for package in cache.packages:
        if package.name == "nginx" and package.architecture in (architecture, "all"):
            debian_nginx = security_versions(package, policy, substitutions)
        current = package.current_ver
        if current is None:
            continue
        if package.name == SOURCE_PACKAGE:
            built = current.ver_str
        newer = [v for v in security_versions(package, policy, substitutions) if version_compare(v, current.ver_str) > 0]
        if newer:
            pending.append({"package": package.name, "installed": current.ver_str, "available": newest(newer, version_compare)})
    seen, matched = sources(cache, policy, substitutions)
    state = {"pending": sorted(pending, key=lambda p: p["package"]), "policy": policy, "sources": seen, "matched": matched,
             "nginx_source": None}
    if built is not None:
        note = source_build_note(built, debian_nginx, version_compare)
        state["nginx_source"] = {"version": upstream(built), "debian_security": note}
    return state


def report() -> dict:
    import apt_pkg  # python3-apt, a dependency of unattended-upgrades

    apt_pkg.init()
    cache = apt_pkg.Cache(None)  # None: no progress output on stdout
    policy = apt_pkg.config.value_list(POLICY_KEY)
    state = security_state(cache, policy, distro(), apt_pkg.version_compare, apt_pkg.config.find("APT::Architecture"))
    reboot_since = REBOOT_REQUIRED.stat().st_mtime if REBOOT_REQUIRED.exists() else None
    reboot_packages = REBOOT_PACKAGES.read_text(encoding="utf-8").split() if REBOOT_PACKAGES.exists() else []
    return {
        **state,
        "lists_updated": newest_mtime(LISTS_DIR.glob("*InRelease")),
        "last_run": last_install_run(UNATTENDED_LOG.read_text(encoding="utf-8", errors="replace")) if UNATTENDED_LOG.exists() else None,
        "running": unattended_running(),
        "next_run": timer_next_run(),
        "reboot": {"required": reboot_since is not None, "since": reboot_since, "packages": sorted(set(reboot_packages))},
        "restart": services_to_restart(),
    }


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (needrestart reads every process)", file=sys.stderr)
        return 2
    json.dump(report(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
