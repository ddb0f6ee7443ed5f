"""The only Jinja2 environment: a Site becomes a bundle of files per host.

`templates/` mirrors the target file system (`templates/etc/nginx/nginx.conf.j2`
lands at `/etc/nginx/nginx.conf`). `.j2` files are rendered, everything else is
copied byte for byte. A `{camera}` segment in a template path renders once per
camera of the host. The roles copy these exact bytes: Ansible never renders an
appliance config (one engine, one template set; see STYLE.md D2).

Bundle on disk (`write_bundle`):
    OUT/<host>/<target path>      the files, as they land on the Pi
    OUT/_vars/<host>.yml          role variables for that host (not installed)

The bundle holds no secret: it is what a user reviews and may share. The
secrets a host needs (RTSP credentials) are written only when asked for
(`write_secrets`, the playbook's render step), to a separate 0700 directory,
and the roles reference them; viewer hashes and token keys never pass here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import xml.sax.saxutils
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import yaml

from pi_stream import capture, share, tunnel
from pi_stream.credentials import write_private_file
from pi_stream.errors import RenderError
from pi_stream.site import Site, role_vars, storage_dirs
from pi_stream.site.webrtc import OME_API_PORT, OME_RTMP_PORT, OME_SIGNALLING_PORT, OME_UDP_ICE_PORT

TEMPLATES_DIR = share.TEMPLATES
CAMERA_TOKEN = "{camera}"
VARS_DIR = "_vars"

# Installed 0600 on the Pi. None today: every secret reaches the Pi outside the bundle.
PRIVATE_PREFIXES: tuple[str, ...] = ()

# Every path a template writes into a config comes from here, so tests can render
# with a temporary root and run the real `nginx -t -c` (certbot-ci does the same).
DEFAULT_PATHS: dict[str, str] = {
    "nginx_conf": "/etc/nginx/nginx.conf",
    "nginx_dir": "/etc/nginx",
    "nginx_pi_stream_dir": "/etc/nginx/pi-stream",
    "nginx_modules_include": "/etc/nginx/modules-enabled/*.conf",
    "nginx_mime_types": "/etc/nginx/mime.types",
    "nginx_pid": "/run/nginx.pid",
    "nginx_log_dir": "/var/log/nginx",
    "nginx_temp_dir": "",  # empty: nginx's compiled-in defaults (Debian: /var/lib/nginx)
    "auth_dir": "/etc/pi-stream/auth",
    "auth_token_keys": "/etc/pi-stream/auth/nginx-token-keys.conf",
    "auth_socket": "/run/pi-stream-auth.sock",
    "auth_service": "/usr/local/lib/pi-stream/pi_stream_auth.py",
    "auth_log": "/var/log/pi-stream/auth.log",
    "python3": "/usr/bin/python3",
    "tls_cert": "/etc/pi-stream/tls/cert.pem",
    "tls_key": "/etc/pi-stream/tls/key.pem",
    "hls_root": "/run/pi-stream",
    "hls_dir": "/run/pi-stream/hls",
    "www": "/var/www/pi-stream",
    "capture_config": capture.CONFIG_PATH,
    "capture_sources": "/etc/pi-stream/capture-sources.json",
    "capture_service": "/usr/local/lib/pi-stream/pi_stream_capture.py",
    "capture_runtime": capture.RUNTIME_DIR,
    "encoder_env": "/etc/pi-stream/encoder.env",
    "firewall_nft": "/etc/pi-stream/firewall.nft",
    "dvr_cache": "/var/cache/pi-stream/dvr",
    "dvr_proxy_conf": "/etc/pi-stream/dvr-proxy.conf",
    "ffmpeg": "/usr/bin/ffmpeg",
    "rpicam_vid": "/usr/bin/rpicam-vid",
    "nft": "/usr/sbin/nft",
    "font": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "ome_conf_dir": "/etc/ovenmediaengine",
    "ome_env": "/etc/pi-stream/ome/api.env",
    "ome_log_dir": "/var/log/ovenmediaengine",
    "ome_binary": "/usr/bin/OvenMediaEngine",
    "podman": "/usr/bin/podman",
}

# Programs and system files a rendered tree only reads: they stay where they are when paths move under a root.
SYSTEM_PATH_KEYS = frozenset(
    {"nginx_modules_include", "nginx_mime_types", "ffmpeg", "rpicam_vid", "nft", "font", "python3", "ome_binary", "podman"}
)


def paths_under(root: Path) -> dict[str, str]:
    """DEFAULT_PATHS with every path the templates write moved under `root`: a Pi's tree in a temporary
    directory, for the real tools (nginx -t, the supervisor) to run against off the Pi."""
    paths = {key: value if key in SYSTEM_PATH_KEYS or not value else f"{root}{value}" for key, value in DEFAULT_PATHS.items()}
    paths["nginx_temp_dir"] = str(root / "var/lib/nginx")
    return paths


NGINX_USER = "www-data"  # Debian's and Raspberry Pi OS's nginx worker user
CAPTURE_USER = "pi-stream"  # a system user of its own: it owns the snapshots and recordings on disk
RTMP_PORT = 1935
RTMP_APP = "live"
OME_APP = "pi-stream"  # OME's application: rtmp://127.0.0.1:OME_RTMP_PORT/pi-stream/CAMERA in, ws://.../pi-stream/CAMERA out
OME_API_TOKEN_ENV = "PI_STREAM_OME_API_TOKEN"
COOKIE_PREFIX, RELAY_COOKIE_PREFIX = "pi_stream", "pi_stream_relay"
IDENTITY_CA_FILE = "identity-ca.pem"

# Templates a host gets only when it runs the feature: a Pi without WebRTC cameras has no OME files at all.
FEATURE_TEMPLATES: dict[str, str] = {
    "etc/ovenmediaengine/": "webrtc",
    "etc/systemd/system/pi-stream-ome.service.j2": "webrtc",
    "etc/wireguard/": "tunnel",
    "etc/pi-stream/relay.json.j2": "relay_agent",
    "etc/systemd/system/pi-stream-relay.service.j2": "relay_agent",
    "usr/local/lib/pi-stream/pi_stream_relay.py": "relay_agent",
    "etc/pi-stream/auth/identity-ca.pem": "identity_ca",
}
# What a relay does not run: capture, recordings, OME and the pages that read the Pi's own files. A relay gets
# nginx (RTMP in from the tunnel, HLS out, its routes to the Pis), the login, fail2ban, the firewall, updates
# and the tunnel.
APPLIANCE_ONLY_TEMPLATES: tuple[str, ...] = (
    "etc/pi-stream/capture.json.j2",
    "etc/systemd/system/pi-stream-capture.service.j2",
    "etc/systemd/system/pi-stream-retention.",
    "usr/local/lib/pi-stream/pi_stream_capture.py",
    "var/www/pi-stream/replay.html.j2",
    "var/www/pi-stream/status.html.j2",
    "var/www/pi-stream/static/replay.js",
    "var/www/pi-stream/static/status.js",
    "var/www/pi-stream/static/ovenplayer",
)


@dataclass(frozen=True)
class BundleFile:
    content: bytes
    mode: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


# host -> target path (relative, no leading slash) -> file
Bundle = dict[str, dict[str, BundleFile]]


def nginx_str(value: Any) -> str:
    """A quoted nginx string argument."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def json_document(value: Any) -> str:
    """A whole JSON file: stable key order as given, one trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def xml_text(value: Any) -> str:
    """Text for an XML element or attribute: & < > and quotes escaped."""
    return xml.sax.saxutils.escape(str(value), {'"': "&quot;", "'": "&apos;"})


FILTERS = {"nginx_str": nginx_str, "json_document": json_document, "xml_text": xml_text}


@jinja2.pass_context
def header(context: jinja2.runtime.Context, comment: str = "#", end: str = "") -> str:
    """Deterministic provenance header: no dates, users or hostnames, so renders are reproducible."""
    source = context["template_path"]
    lines = [
        f"Generated by pi-stream from templates/{source}.",
        "Edit the site's site.yml and deploy again; changes made here are overwritten.",
    ]
    # Markup: the header is template text, not data, and must survive the HTML autoescape.
    return markupsafe.Markup("\n".join(f"{comment} {line}{end}" for line in lines))


def make_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Camera titles reach the player page: escape there, nowhere else.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
    )
    for name, function in FILTERS.items():
        if name in env.filters:
            raise RenderError(f"template filter {name!r} clashes with a Jinja2 built-in")
        env.filters[name] = function
    env.globals["header"] = header
    return env


def template_paths(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Every template, relative to templates/, in a stable order.

    Bytecode is not a template: pip compiles every .py in a wheel, templates/'s programs included,
    and a __pycache__ beside them must not become files on the Pi.
    """
    found = []
    for root, dirs, files in os.walk(templates_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                found.append(str((Path(root) / name).relative_to(templates_dir)))
    return sorted(found)


# nginx 1.25.1 made HTTP/2 a directive of its own (`http2 on;`); before, it was a parameter of
# `listen`, which newer versions still take, with a deprecation warning at every `nginx -t`.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


def nginx_version(text: str) -> tuple[int, ...]:
    """(1, 26, 3) of "1.26.3" (anything after the numbers ignored)."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0].split("-")[0])[:3])


def http2_syntax(site: Site) -> dict[str, Any]:
    """How the TLS servers offer HTTP/2 on this site's nginx: the directive, or the listen parameter.

    A source build's version is in site.yml. The distribution's nginx is 1.22 on bookworm and 1.26 on
    trixie, and the Pi's release is not known when rendering: the parameter works on both."""
    if not (site.web.https and site.web.http2):
        return {"listen": "", "directive": False}
    if site.nginx_install_method == "source" and nginx_version(site.nginx_source.nginx.version) >= HTTP2_DIRECTIVE_SINCE:
        return {"listen": "", "directive": True}
    return {"listen": " http2", "directive": False}


def host_context(site: Site, host: str, paths: Mapping[str, str], keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    cameras = site.served_cameras(host)
    relay = site.is_relay(host)
    keys = dict(keys or {})
    other_relays = site.remote.other_origins(host) if relay else ()
    return {
        "site": site,
        "host": site.host(host),
        "host_kind": "relay" if relay else "appliance",
        # A relay's login cookies have names of their own: an administrator passing through it to a
        # Pi's pages gets the Pi's cookies on the relay's host name too (see pi_stream_auth.py).
        "cookie_prefix": RELAY_COOKIE_PREFIX if relay else COOKIE_PREFIX,
        "cameras": cameras,
        # Cross-origin players allowed on the media paths: the site's own, and on a relay the other relays'
        # pages, whose players fail over to this relay with the same token.
        "cors_origins": (*site.web.cors_origins, *other_relays),
        "connect_origins": other_relays,
        "relay_urls": tuple(r.url for r in site.remote.relays) if relay else (),
        "tunnel": tunnel.tunnel_context(site, host, keys),
        "tunnel_tcp_ports": site.tunnel_tcp_ports(host),
        "public_udp_ports": site.public_udp_ports(host),
        "private_web": site.private_web(host),
        "open_tcp_ports": site.open_tcp_ports(host),
        "private_tcp_ports": site.private_tcp_ports(host),
        "relay_push": relay_push(site, host),
        "relay_agent": tunnel.agent_config(site, host, keys, RTMP_PORT) if relay_agent_runs(site, host) else {},
        "paths": dict(paths),
        "nginx_user": NGINX_USER,
        "rtmp_port": RTMP_PORT,
        "rtmp_app": RTMP_APP,
        "public_tcp_ports": site.public_tcp_ports(host),
        "http2": http2_syntax(site),
        "dvrs": site.dvrs_on(host),
        "auth_access": auth_access(site, host, paths),
        "capture_user": CAPTURE_USER,
        "capture_config": capture_config(site, host, paths),
        "storage_dirs": storage_dirs(site, host),
        "snapshot_root": capture.snapshot_root(site),
        "recording_root": capture.recording_root(site),
        "webrtc_cameras": site.webrtc_cameras_on(host),
        "ome": ome_context(site, host),
        "login": site.login,
        # The identity provider's CA (login.ca_file), installed as is: a public certificate, not a secret.
        "identity_ca": site.login.ca_pem,
    }


def ome_context(site: Site, host: str) -> dict[str, Any]:
    """OME's ports and names, shared by Server.xml, nginx (the push and the signalling proxy) and the unit."""
    if site.webrtc is None:
        return {}
    return {
        "app": OME_APP,
        "rtmp_port": OME_RTMP_PORT,
        "signalling_port": OME_SIGNALLING_PORT,
        "api_port": OME_API_PORT,
        "udp_ice_port": OME_UDP_ICE_PORT,
        "relay_address": site.webrtc.relay_address(site.host(host)),
        "api_token_env": OME_API_TOKEN_ENV,
    }


def relay_agent_runs(site: Site, host: str) -> bool:
    """A Pi of a relay site runs the agent that picks its relay."""
    return site.remote.uses_relays and not site.is_relay(host)


def relay_push(site: Site, host: str) -> dict[str, Any]:
    """On a Pi of a relay site: the cameras nginx-rtmp pushes, once each, to the tunnel's service address."""
    if not relay_agent_runs(site, host):
        return {}
    relayed = {c.name for c in site.relay_cameras()}
    return {
        "url": f"rtmp://{site.remote.service_address}:{RTMP_PORT}/{RTMP_APP}",
        "cameras": [c for c in site.cameras_on(host) if c.name in relayed],
    }


def feature_enabled(site: Site, host: str, template: str) -> bool:
    if site.is_relay(host) and template.startswith(APPLIANCE_ONLY_TEMPLATES):
        return False
    feature = next((f for prefix, f in FEATURE_TEMPLATES.items() if template.startswith(prefix)), None)
    if feature == "webrtc":
        return bool(site.webrtc_cameras_on(host))
    if feature == "tunnel":
        return site.remote.uses_relays
    if feature == "relay_agent":
        return relay_agent_runs(site, host)
    if feature == "identity_ca":
        return site.login.ca_file is not None
    return True


def capture_config(site: Site, host: str, paths: Mapping[str, str]) -> dict[str, Any]:
    config = capture.supervisor_config(site, host, paths, f"rtmp://127.0.0.1:{RTMP_PORT}/{RTMP_APP}/{{camera}}")
    comment = "Generated by pi-stream from templates/etc/pi-stream/capture.json.j2. Edit the site's site.yml and deploy again."
    return {"_comment": comment, **config}


def auth_access(site: Site, host: str, paths: Mapping[str, str] = DEFAULT_PATHS) -> dict[str, Any]:
    """The login service's view of the site: cameras and who may watch which. No secrets:
    the hashes and the site key reach the service through systemd credentials."""
    return {
        "cameras": [{"name": c.name, "title": c.title} for c in site.served_cameras(host)],
        "access": {viewer: [c.name for c in site.cameras_for(viewer, host)] for viewer in site.viewers},
        "session_seconds": site.auth.session_seconds,
        "link_seconds": site.auth.link_seconds,
        "secure_cookies": site.web.https,
        # The DVRs whose proxy puts this login in front of the DVR's own, and who may pass it.
        "dvrs": {dvr.name: list(dvr.viewers) for dvr in site.dvrs_on(host) if dvr.viewer_auth},
        # The cameras whose token is also set on /webrtc/CAMERA/ (OME's signalling, behind nginx).
        "webrtc": [c.name for c in site.webrtc_cameras_on(host)],
        **({"cookie_prefix": RELAY_COOKIE_PREFIX} if site.is_relay(host) else {}),
        **identity_access(site, paths),
    }


def identity_access(site: Site, paths: Mapping[str, str]) -> dict[str, Any]:
    """access.json's identity logins (docs/security.md, "Logging in by identity"): which e-mail addresses log
    in as which viewer, and how the service checks them. Public data: the client secret is a credential."""
    login = site.login
    access: dict[str, Any] = {"password_login": login.password, "identities": dict(sorted(site.identities.items()))}
    if login.oidc is not None:
        access["oidc"] = {"issuer": login.oidc.issuer, "client_id": login.oidc.client_id, "scopes": login.oidc.scopes,
                          "name": login.oidc.name}
    if login.proxy is not None:
        proxy = login.proxy
        access["proxy"] = {"issuer": proxy.issuer, "jwks_uri": proxy.jwks_uri, "audience": proxy.audience,
                           "header": proxy.header, "bearer": proxy.bearer}
    if login.ca_file is not None:
        access["ca_file"] = f"{paths['auth_dir']}/{IDENTITY_CA_FILE}"
    return access


def render_site(site: Site, paths: Mapping[str, str] | None = None, templates_dir: Path = TEMPLATES_DIR) -> Bundle:
    """Render every template for every host. Pure: no file is written."""
    merged_paths = {**DEFAULT_PATHS, **(paths or {})}
    env = make_environment(share.require(templates_dir))
    bundle: Bundle = {}
    templates = template_paths(templates_dir)
    if not templates:
        raise RenderError(f"{templates_dir} holds no templates: this pi-stream is incomplete; reinstall it (pipx install --force pi-stream)")
    keys = tunnel.read_public_keys(site)
    for host in site.provisioned_hosts:
        files: dict[str, BundleFile] = {}
        base_context = host_context(site, host.name, merged_paths, keys)
        for rel in templates:
            if not feature_enabled(site, host.name, rel):
                continue
            instances = [None]
            if CAMERA_TOKEN in rel:
                instances = list(base_context["cameras"])
            for camera in instances:
                target = rel.removesuffix(".j2")
                if camera is not None:
                    target = target.replace(CAMERA_TOKEN, camera.name)
                if rel.endswith(".j2"):
                    context = {**base_context, "camera": camera, "template_path": rel}
                    content = render_one(env, rel, context)
                else:
                    content = (templates_dir / rel).read_bytes()
                mode = 0o600 if target.startswith(PRIVATE_PREFIXES) else 0o644
                files[target] = BundleFile(content, mode)
        bundle[host.name] = dict(sorted(files.items()))
    return bundle


def render_one(env: jinja2.Environment, rel: str, context: dict[str, Any]) -> bytes:
    """Render one template; errors name the template and the missing value, never the context (secrets)."""
    try:
        return env.get_template(rel).render(context).encode("utf-8")
    except jinja2.UndefinedError as exc:
        raise RenderError(f"templates/{rel}: missing value: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"templates/{rel}:{exc.lineno}: template syntax error: {exc.message}") from None


def bundle_vars(site: Site) -> dict[str, dict[str, Any]]:
    """Role variables per host, flattened across roles."""
    result = {}
    for host in site.provisioned_hosts:
        # Which play may provision this host: playbooks/site.yml refuses a relay in the appliance play and the other way round.
        merged: dict[str, Any] = {"pi_stream_host_kind": "relay" if site.is_relay(host.name) else "appliance"}
        for values in role_vars(site, host.name).values():
            merged.update(values)
        result[host.name] = merged
    return result


def write_bundle(site: Site, bundle: Bundle, out: Path) -> None:
    """Write the bundle to `out`, replacing what was there: no stale file from an earlier render survives.

    Written to a sibling temp dir and swapped in, so a failed render never leaves half a bundle.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(staging, 0o700)  # the bundle may hold RTSP passwords
        for host, files in bundle.items():
            for target, file in files.items():
                path = staging / host / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(file.content)
                os.chmod(path, file.mode)
        vars_dir = staging / VARS_DIR
        vars_dir.mkdir()
        for host, values in bundle_vars(site).items():
            (vars_dir / f"{host}.yml").write_text(
                "# Role variables for this host, generated by pi-stream render. Not installed on the host.\n"
                + yaml.safe_dump(values, sort_keys=True, default_flow_style=False),
                encoding="utf-8",
            )
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def host_secrets(site: Site, host: str) -> dict[str, Any]:
    """What a host needs that must not be in the bundle: each RTSP camera's URL with its credentials."""
    return {"camera_capture_credentials": capture.source_credentials(site, host)}


def write_secrets(site: Site, directory: Path) -> None:
    """One 0600 YAML file per host in a 0700 directory, for the playbook to load with no_log."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for host in site.provisioned_hosts:
        write_private_file(
            directory / f"{host.name}.yml",
            "# Secrets for this host, written by pi-stream for the playbook. Not part of the bundle.\n"
            + yaml.safe_dump(host_secrets(site, host.name), sort_keys=True, default_flow_style=False),
        )


def render_to(site: Site, out: Path, paths: Mapping[str, str] | None = None) -> Bundle:
    bundle = render_site(site, paths)
    write_bundle(site, bundle, out)
    return bundle
