"""Checks of a host as SSH sees it (testinfra): its files, services, sockets, firewall, jails and updates.

Each takes testinfra's host (`remote`) and returns (ok, detail); an exception is the check failing with it.
"""

from __future__ import annotations

import time

from pi_stream.render import DEFAULT_PATHS, BundleFile
from pi_stream.site import Host, Site
from pi_stream.status import relay_agent_state, relay_ok
from pi_stream.tunnel import AGENT_STATE, read_public_keys
from pi_stream.updates import judge, read_report


def reachable(remote, host: Host) -> tuple[bool, str]:
    return remote.run("true").rc == 0, host.address


def files_match(remote, files: dict[str, BundleFile]) -> tuple[bool, str]:
    """Every file of the host's bundle is on the host, byte for byte (one command for all: a round trip each was slow)."""
    paths = ["/" + target for target in files]
    listing = remote.run("sha256sum" + " %s" * len(paths), *paths).stdout
    deployed = dict(reversed(line.split(None, 1)) for line in listing.splitlines() if line.strip())
    differing = [path for path, file in zip(paths, files.values(), strict=True) if deployed.get(path) != file.sha256]
    detail = f"{len(files)} files identical to `pi-stream render`"
    return not differing, ("differ: " + ", ".join(differing[:5])) if differing else detail


def service_state(remote, name: str) -> tuple[bool, str]:
    service = remote.service(name)
    running = service.is_running
    return running and service.is_enabled, "running, enabled" if running else "not running"


def listening(remote, port: int, detail: str) -> tuple[bool, str]:
    return remote.socket(f"tcp://0.0.0.0:{port}").is_listening, detail


def rtmp_loopback_only(remote) -> tuple[bool, str]:
    loopback = remote.socket("tcp://127.0.0.1:1935").is_listening
    public = remote.socket("tcp://0.0.0.0:1935").is_listening
    return loopback and not public, "127.0.0.1:1935" if loopback else "not listening"


def hls_on_tmpfs(remote) -> tuple[bool, str]:
    out = remote.run(f"findmnt -n -o FSTYPE -T {DEFAULT_PATHS['hls_dir']}")
    fstype = out.stdout.strip()
    return fstype == "tmpfs", fstype or out.stderr.strip()


def firewall_loaded(remote) -> tuple[bool, str]:
    out = remote.run("nft list table inet pi_stream")
    return out.rc == 0 and "policy drop" in out.stdout, "inbound policy drop" if out.rc == 0 else out.stderr.strip()


def jail_active(remote, jail: str) -> tuple[bool, str]:
    out = remote.run("fail2ban-client status %s", jail)
    banned = next((line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if "Currently banned" in line), "?")
    return out.rc == 0, f"currently banned: {banned}" if out.rc == 0 else out.stderr.strip()


def encoder_choice(remote) -> tuple[bool, str]:
    env = remote.file(DEFAULT_PATHS["encoder_env"])
    if not env.exists:
        return True, "no camera encodes (remux only)"
    values = dict(line.split("=", 1) for line in env.content_string.splitlines() if "=" in line and not line.startswith("#"))
    encoder = values.get("PI_STREAM_ENCODER", "?").strip('"')
    kind = "software, on the CPU" if encoder == "libx264" else "hardware"
    return encoder != "?", f"{encoder} ({kind})"


def identity_providers(remote) -> tuple[bool, str]:
    """The identity providers of site.yml login: answer this host as a sign-in needs them to (discovery, signing keys,
    through the site's CA): the login service's own code fetches them, so this is what a login would meet."""
    out = remote.run("%s %s providers", DEFAULT_PATHS["python3"], DEFAULT_PATHS["auth_service"])
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return out.rc == 0, "; ".join(lines)[-400:] or f"exit {out.rc}, nothing said"


def security_updates(remote, site: Site) -> tuple[bool, str]:
    """unattended-upgrades doing its job: scheduled, and nothing left pending after a run that saw it (pi_stream.updates)."""
    verdict = judge(read_report(remote), site.updates)
    return verdict.ok, "; ".join([verdict.summary, *verdict.notes])


def tunnel_handshakes(remote, site: Site, peers: tuple[Host, ...]) -> tuple[bool, str]:
    """Each peer of the host's WireGuard link shook hands within the last 3 minutes (WireGuard rekeys every 2)."""
    names = {key: name for name, key in read_public_keys(site).items()}
    out = remote.run("wg show pistream latest-handshakes").stdout
    now = time.time()
    ages = {names.get(key, key[:8]): now - int(when) for key, when in (line.split() for line in out.splitlines() if line.strip())}
    stale = [p.name for p in peers if ages.get(p.name) is None or ages[p.name] > 180]
    detail = ", ".join(f"{p.name} {ages[p.name]:.0f} s ago" for p in peers if p.name in ages and p.name not in stale)
    return not stale, detail + (f"; no recent handshake with {', '.join(stale)}" if stale else "")


def relay_in_use(remote) -> str:
    """The relay a Pi of a relay site pushes to now, from its agent's state file ("" if none answers or it cannot be said)."""
    try:
        state = relay_agent_state(remote.run("cat %s", AGENT_STATE), None)
    except RuntimeError:  # testinfra's Ansible backend: host unreachable, which the ssh check reports
        return ""
    return state["active"] if relay_ok(state) else ""
