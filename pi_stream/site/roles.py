"""What the model hands the Ansible roles: each role's variables per host, and the values they are made of.

Not a section: it reads the whole `Site`. The renderer also uses `storage_dirs`
for the capture supervisor's settings.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from pi_stream.nginx_source import role_vars as nginx_source_vars
from pi_stream.ome_source import role_vars as ome_source_vars
from pi_stream.site.model import Site


# Role variables this model exports per host. tests/unit assert each role's
# meta/argument_specs.yml accepts exactly these names, so the two cannot drift.
def role_vars(site: Site, host: str) -> dict[str, dict[str, Any]]:
    cameras = site.cameras_on(host)
    tls_mode = "none" if not site.web.https else ("provided" if site.web.cert_file else "self_signed")
    relay = site.is_relay(host)
    # A relay is a VPS or any Debian box, not a Pi: the distribution's nginx, never a build.
    nginx_method = "package" if relay else site.nginx_install_method
    oidc_secret = site.login.oidc.client_secret_file if site.login.oidc else None
    common = {
        "firewall": {"firewall_tcp_ports": list(site.public_tcp_ports(host))},
        "wireguard_link": {
            "wireguard_link_enabled": site.remote.uses_relays,
            "wireguard_link_agent": site.remote.uses_relays and not relay,
        },
        "viewer_auth": {
            # "" on a site of identity logins alone, which has no viewers.htpasswd: the host's file is then empty.
            "viewer_auth_viewers_src": str(site.viewers_file.resolve()) if site.viewers_file.exists() else "",
            "viewer_auth_identity": site.login.identity,
            "viewer_auth_identity_ca": site.login.ca_file is not None,
            "viewer_auth_oidc_secret_src": str(oidc_secret.resolve()) if oidc_secret else "",
            # Relays share one site key (the first relay's), so a player link made at one is good at every other:
            # a player that was watching moves to another relay with the token it has.
            "viewer_auth_token_key_host": site.relays[0].name if relay else "",
        },
        "nginx_rtmp": {
            "nginx_rtmp_install_method": nginx_method,
            # Only for the source method: a package site's bundle does not change with the build files.
            "nginx_rtmp_source": nginx_source_vars(site.nginx_source) if nginx_method == "source" else {},
            "nginx_rtmp_tls_mode": tls_mode,
            "nginx_rtmp_tls_cert_src": str(site.web.cert_file.resolve()) if site.web.cert_file else "",
            "nginx_rtmp_tls_key_src": str(site.web.key_file.resolve()) if site.web.key_file else "",
            "nginx_rtmp_tls_common_name": tls_common_name(site, host),
            # The proxied DVRs' names go into the self-signed certificate too.
            "nginx_rtmp_tls_alt_names": [d.server_name for d in site.dvrs_on(host) if d.server_name],
        },
    }
    common["dvr_proxy"] = {"dvr_proxy_cached": [d.name for d in site.dvrs_on(host) if d.cache_mb]}
    if relay:
        return {**common, "fail2ban": {}, "security_updates": {"security_updates_enabled": site.updates.security}}
    return {
        **common,
        "camera_capture": {
            "camera_capture_cameras": [c.name for c in cameras],
            "camera_capture_encoder_candidates": list(site.encoder_candidates),
            "camera_capture_encode_required": any(c.encodes for c in cameras),
            "camera_capture_storage_dirs": storage_dirs(site, host),
        },
        "fail2ban": {},
        "security_updates": {"security_updates_enabled": site.updates.security},
        "webrtc_ome": webrtc_vars(site, host),
    }


def webrtc_vars(site: Site, host: str) -> dict[str, Any]:
    webrtc = site.webrtc
    enabled = bool(site.webrtc_cameras_on(host))
    method = webrtc.install_method if webrtc else "source"
    return {
        "webrtc_ome_enabled": enabled,
        "webrtc_ome_install_method": method,
        # Only for the source method on a host that runs OME: no other bundle changes with the build files.
        "webrtc_ome_source": ome_source_vars(webrtc.source) if enabled and method == "source" else {},
        "webrtc_ome_image": webrtc.image if enabled and method == "container" else "",
    }


def storage_dirs(site: Site, host: str) -> list[str]:
    """Directories the capture supervisor writes to on this host (created by the role, owned by its user)."""
    cameras = site.cameras_on(host)
    dirs = []
    if any(c.snapshots.keep_days for c in cameras):
        dirs.append(site.storage.snapshots_path)
    if any(c.recording.enabled for c in cameras):
        dirs.append(site.storage.recordings_path)
    return dirs


def tls_common_name(site: Site, host: str) -> str:
    relay = site.remote.relay(host)
    if relay is not None:
        return urllib.parse.urlsplit(relay.url).hostname or relay.endpoint
    if site.web.server_name not in ("_", ""):
        return site.web.server_name
    return site.host(host).address
