"""The site model: the one place that knows what a valid site is.

A site is a directory holding `site.yml` (cameras, web, HLS), `inventory.yml`
(an ordinary Ansible YAML inventory: which Pis, how to reach them) and
`viewers.htpasswd` (written by `pi-stream user add`). `load_site()` reads all
three and returns a frozen `Site`, or raises one `SiteError` listing every
problem at once as (file, field path, what would be valid).

Each site.yml section is checked by the module named after it (`nvrs:` in
nvrs.py, `dvr_proxy:` in dvr_proxy.py, `status:` in metrics.py, `capture:` in
capture_schedule.py), all over one engine, `fields.Fields`. `parse_site` below
calls them in turn; files.py, inventory.py and viewers.py read the other two
files; ports.py checks clashes across sections; model.py holds `Site` and
roles.py the variables it exports to the Ansible roles. A new section is one
new module, one call in `parse_site` and one field on `Site`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pi_stream.credentials import VIEWERS_FILE
from pi_stream.site.auth import Auth, parse_auth
from pi_stream.site.cameras import (
    SOURCE_TYPES,
    Camera,
    Recording,
    Snapshots,
    Source,
    check_channels,
    parse_cameras,
    parse_nvr_source,
    parse_recording,
    parse_snapshots,
    parse_source,
    redact_url,
    rtsp_url_problem,
)
from pi_stream.site.capture_schedule import CaptureSchedule, parse_capture
from pi_stream.site.dvr_proxy import (
    DNS_NAME_RE,
    DVR_PRESETS,
    DvrPreset,
    DvrProxy,
    WebSocketPort,
    parse_dvr_proxies,
    parse_dvr_viewers,
    parse_login_paths,
    parse_websocket_ports,
)
from pi_stream.site.encoder import DEFAULT_ENCODERS, KNOWN_ENCODERS, parse_encoder
from pi_stream.site.fail2ban import Fail2ban, parse_fail2ban
from pi_stream.site.fields import NAME_HINT, NAME_RE, Fields, Problems, type_name
from pi_stream.site.files import INVENTORY_FILE, SITE_FILE, read_yaml, readable_secrets_note
from pi_stream.site.firewall import parse_firewall
from pi_stream.site.hls import Hls, parse_hls
from pi_stream.site.inventory import BUILDERS_GROUP, HOST_RE, RELAYS_GROUP, Host, load_inventory, read_inventory
from pi_stream.site.metrics import parse_metrics_allow
from pi_stream.site.model import Site
from pi_stream.site.nginx import SHA256_RE, VERSION_RE, parse_nginx, parse_nginx_source, parse_source_archive
from pi_stream.site.nvrs import Nvr, parse_nvrs
from pi_stream.site.ports import RTMP_PORT, check_ports, check_relay_route_ports, shares_port
from pi_stream.site.remote import TOPOLOGIES, Relay, Remote, parse_remote
from pi_stream.site.roles import role_vars, storage_dirs, tls_common_name
from pi_stream.site.storage import DEFAULT_SNAPSHOTS_PATH, SYSTEM_DIRS, Storage, check_recordings, parse_storage
from pi_stream.site.updates import DEFAULT_UPDATE_POLICY, UpdatePolicy, parse_updates, update_notes
from pi_stream.site.login import Login, parse_login
from pi_stream.site.viewers import NO_VIEWERS, load_viewers, parse_camera_access, parse_viewers_section
from pi_stream.site.web import Web, parse_web
from pi_stream.site.webrtc import WebRtc, parse_webrtc

# Every name site.py offered before it became a package, and the parse functions of the sections it had inline.
__all__ = [
    "BUILDERS_GROUP",
    "RELAYS_GROUP",
    "TOPOLOGIES",
    "DEFAULT_ENCODERS",
    "DEFAULT_SNAPSHOTS_PATH",
    "DEFAULT_UPDATE_POLICY",
    "DNS_NAME_RE",
    "DVR_PRESETS",
    "HOST_RE",
    "INVENTORY_FILE",
    "KNOWN_ENCODERS",
    "NAME_HINT",
    "NAME_RE",
    "RTMP_PORT",
    "SHA256_RE",
    "SITE_FILE",
    "SOURCE_TYPES",
    "SYSTEM_DIRS",
    "VERSION_RE",
    "Auth",
    "Camera",
    "CaptureSchedule",
    "DvrPreset",
    "DvrProxy",
    "Fail2ban",
    "Fields",
    "Hls",
    "Login",
    "Host",
    "Nvr",
    "Problems",
    "Recording",
    "Relay",
    "Remote",
    "Site",
    "Snapshots",
    "Source",
    "Storage",
    "UpdatePolicy",
    "Web",
    "WebRtc",
    "WebSocketPort",
    "check_channels",
    "check_ports",
    "check_recordings",
    "load_inventory",
    "load_site",
    "load_viewers",
    "parse_auth",
    "parse_camera_access",
    "parse_cameras",
    "parse_capture",
    "parse_dvr_proxies",
    "parse_dvr_viewers",
    "parse_encoder",
    "parse_fail2ban",
    "parse_firewall",
    "parse_hls",
    "parse_login",
    "parse_login_paths",
    "parse_metrics_allow",
    "parse_nginx",
    "parse_nginx_source",
    "parse_nvr_source",
    "parse_nvrs",
    "parse_recording",
    "parse_remote",
    "read_inventory",
    "parse_site",
    "parse_snapshots",
    "parse_source",
    "parse_source_archive",
    "parse_storage",
    "parse_updates",
    "parse_web",
    "parse_webrtc",
    "parse_websocket_ports",
    "read_yaml",
    "redact_url",
    "role_vars",
    "rtsp_url_problem",
    "shares_port",
    "storage_dirs",
    "tls_common_name",
    "type_name",
    "update_notes",
]


def load_site(directory: Path | str) -> Site:
    """Load and validate a site directory; raise SiteError with every problem found."""
    directory = Path(directory)
    problems = Problems()
    if not directory.is_dir():
        problems.add(str(directory), "", "not a directory (create a site with `pi-stream init DIR`)")
        problems.raise_if_any()
    inventory = read_inventory(directory / INVENTORY_FILE, problems)
    viewers = load_viewers(directory / VIEWERS_FILE, problems)
    site_path = directory / SITE_FILE
    before = len(problems.items)
    data = read_yaml(site_path, problems)
    if data is None and len(problems.items) == before:
        problems.add(str(site_path), "", "the file is empty: start from `pi-stream init`")
    elif data is not None and not isinstance(data, dict):
        shape = f"the top level must be a mapping (name:, cameras:, ...), not {type_name(data)}: start from `pi-stream init`"
        problems.add(str(site_path), "", shape)
    if len(problems.items) > before:
        problems.raise_if_any()  # no mapping to check: field-level checks ("no cameras") would only add noise
    site = parse_site(data, str(site_path), directory, inventory.appliances, viewers, problems, inventory.builders, inventory.relays)
    problems.raise_if_any()
    assert site is not None
    note = readable_secrets_note(site_path, site.secret_fields())
    return dataclasses.replace(site, notes=(note,)) if note else site


def check_identity_logins(login: Login, identities: dict[str, str], file: str, problems: Problems) -> None:
    """Identities and identity logins come together: emails with no way to sign in, or a way in that admits nobody,
    is a site that does not do what its author thinks."""
    if identities and not login.identity:
        problems.add(file, "login", "viewers have emails: but no identity login is on: add login.oidc or login.proxy")
    for key, way in (("login.oidc", login.oidc), ("login.proxy", login.proxy)):
        if way is not None and not identities:
            problems.add(file, key, "no viewer has emails:, so nobody could sign in this way: add viewers: {NAME: {emails: [ADDRESS]}}")


def parse_site(
    data: Any,
    file: str,
    directory: Path,
    hosts: tuple[Host, ...],
    viewers: tuple[str, ...],
    problems: Problems,
    build_hosts: tuple[Host, ...] = (),
    relay_hosts: tuple[Host, ...] = (),
) -> Site | None:
    top = Fields(data, "", file, problems)
    name = top.string("name", directory.resolve().name or "site")
    web = parse_web(top.sub("web"), directory)
    hls = parse_hls(top.sub("hls"))
    encoder_candidates = parse_encoder(top.sub("encoder"))
    fail2ban = parse_fail2ban(top.sub("fail2ban"))
    extra_ports = parse_firewall(top.sub("firewall"))
    install_method, nginx_source = parse_nginx(top.sub("nginx"), directory, build_hosts)
    auth = parse_auth(top.sub("auth"))
    nvrs = parse_nvrs(top.sub("nvrs"))
    storage = parse_storage(top.sub("storage"))
    capture = parse_capture(top.sub("capture"))
    metrics_allow = parse_metrics_allow(top.sub("status"))
    updates = parse_updates(top.sub("updates"))
    cameras = parse_cameras(top, hosts, nvrs)
    check_recordings(cameras, storage, file, problems)
    viewer_section = parse_viewers_section(top.sub("viewers"), viewers, cameras)
    password_viewers, viewers = viewers, (*viewers, *viewer_section.identity_only)
    login = parse_login(top.sub("login"), directory, web.https)
    check_identity_logins(login, viewer_section.identities, file, problems)
    viewers_file = str(directory / VIEWERS_FILE)
    if not viewers and not any(problem[0] == viewers_file for problem in problems.items):  # a broken file says so itself
        problems.add(viewers_file, "", NO_VIEWERS)
    dvrs = parse_dvr_proxies(top.sub("dvr_proxy"), web, hosts, viewers)
    camera_names = tuple(c.name for c in cameras)
    on_demand = frozenset(c.name for c in cameras if c.on_demand)
    webrtc = None if top.absent("webrtc") else parse_webrtc(top.sub("webrtc"), camera_names, on_demand, directory, build_hosts)
    remote = parse_remote(top, top.sub("relay"), relay_hosts, len(hosts), web.https, web.https_port, viewers)
    top.done()
    check_ports(web, hosts, extra_ports, dvrs, file, problems, webrtc)
    if remote.uses_relays and remote.relays and not [c for c in cameras if not c.on_demand]:
        problems.add(file, "relay", "no camera to relay: every camera is on_demand, which a relay's viewers never start")
    relays = tuple(next(h for h in relay_hosts if h.name == r.host) for r in remote.relays)
    if remote.admins:
        check_relay_route_ports(remote, hosts, relays, dvrs, web, file, problems)
    if problems.items:
        return None
    return Site(
        directory=directory,
        name=name,
        hosts=hosts,
        cameras=cameras,
        web=web,
        hls=hls,
        fail2ban=fail2ban,
        encoder_candidates=encoder_candidates,
        extra_tcp_ports=extra_ports,
        nginx_install_method=install_method,
        nginx_source=nginx_source,
        build_hosts=build_hosts,
        viewers=viewers,
        auth=auth,
        camera_access=viewer_section.access,
        password_viewers=password_viewers,
        identities=viewer_section.identities,
        login=login,
        nvrs=nvrs,
        storage=storage,
        capture=capture,
        metrics_allow=metrics_allow,
        dvrs=dvrs,
        updates=updates,
        webrtc=webrtc,
        remote=remote,
        relays=relays,
    )
