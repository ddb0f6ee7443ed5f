"""The site model: the one place that knows what a valid site is.

A site is a directory holding `site.yml` (cameras, web, HLS), `inventory.yml`
(an ordinary Ansible YAML inventory: which Pis, how to reach them) and
`viewers.htpasswd` (written by `pi-stream user add`). `load_site()` reads all
three and returns a frozen `Site`, or raises one `SiteError` listing every
problem at once as (file, field path, what would be valid).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from pi_stream.credentials import VIEWERS_FILE, hash_problem, read_htpasswd
from pi_stream.errors import SiteError
from pi_stream.nginx_source import (
    DEFAULT_NGINX_SOURCE,
    NGINX_RELEASE_URL,
    RTMP_MODULE_RELEASE_URL,
    NginxSource,
    SourceArchive,
)
from pi_stream.nginx_source import role_vars as nginx_source_vars

SITE_FILE = "site.yml"
INVENTORY_FILE = "inventory.yml"
BUILDERS_GROUP = "pi_stream_builders"  # inventory group of hosts that only build packages

# Names become file names, systemd instance names and URL path segments.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NAME_HINT = "use 1-32 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+~]{0,40}$")
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
DNS_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

SOURCE_TYPES = ("testsrc", "v4l2", "libcamera", "rtsp")
DEFAULT_ENCODERS = ("h264_v4l2m2m", "libx264")
KNOWN_ENCODERS = ("h264_v4l2m2m", "h264_omx", "libx264", "libopenh264")
# On the Pi: /srv holds what the host serves (FHS), and nginx serves the snapshots from here.
DEFAULT_SNAPSHOTS_PATH = "/srv/pi-stream/snapshots"
RTMP_PORT = 1935  # nginx-rtmp listens on 127.0.0.1 only, but the port is still taken on the host


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh_port: int = 22
    ssh_user: str = "root"


@dataclass(frozen=True)
class Source:
    type: str
    url: str = ""  # rtsp: without credentials
    username: str = ""
    password: str = field(default="", repr=False)
    device: str = ""  # v4l2
    input_format: str = ""  # v4l2: e.g. mjpeg, h264
    nvr: str = ""  # rtsp: the NVR (site.yml `nvrs:`) whose channel this is; url and credentials come from it
    channel: int = 0

    @property
    def encodes(self) -> bool:
        """Whether ffmpeg must encode H.264 (True) or can remux what the source sends (False)."""
        if self.type == "rtsp":
            return False
        if self.type == "v4l2":
            return self.input_format != "h264"
        return self.type == "testsrc"

    def ffmpeg_url(self) -> str:
        """The RTSP URL with credentials percent-encoded, so `! @ : / % #` survive ffmpeg's URL parser."""
        if not self.username:
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self.username, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        netloc = f"{userinfo}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class Nvr:
    """A recorder (NVR/DVR) serving many cameras as channels, with a limit on concurrent RTSP sessions."""

    name: str
    address: str
    port: int
    username: str
    password: str = field(repr=False)
    path_template: str  # e.g. "/Streaming/Channels/{channel}01"
    max_sessions: int

    def url(self, channel: int) -> str:
        """The channel's URL without credentials (those reach only the Pi, in a root-only file)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"rtsp://{host}:{self.port}{self.path_template.replace('{channel}', str(channel))}"


@dataclass(frozen=True)
class Snapshots:
    interval_seconds: int  # latest.jpg is refreshed this often
    keep_days: int  # the dated series is kept this long; 0: latest.jpg only, nothing on disk


@dataclass(frozen=True)
class Recording:
    enabled: bool
    keep_days: int
    segment_seconds: int


@dataclass(frozen=True)
class Camera:
    name: str
    host: str
    source: Source
    width: int
    height: int
    fps: int
    bitrate_kbps: int
    title: str
    priority: int = 50  # higher runs first when an NVR's session budget is short
    snapshots: Snapshots = Snapshots(interval_seconds=10, keep_days=7)
    recording: Recording = Recording(enabled=False, keep_days=7, segment_seconds=300)
    on_demand: bool = False  # pulled from its source only while someone watches
    transcode: bool = False  # re-encode to H.264 (an H.265 source; costs CPU)

    @property
    def encodes(self) -> bool:
        return self.source.encodes or self.transcode


@dataclass(frozen=True)
class Storage:
    snapshots_path: str
    recordings_path: str  # "" until the site names a disk: recordings never go to the SD card by default
    recordings_on_root_fs: bool  # allow recordings_path on the root file system (tests, or a Pi booting from SSD)
    min_free_percent: int  # below this, snapshots and recordings stop being written


@dataclass(frozen=True)
class CaptureSchedule:
    """How the capture supervisor treats sources that fail: exponential backoff with jitter, then a rare re-probe."""

    stagger_seconds: int
    retry_first_seconds: int
    retry_max_seconds: int
    disable_after_failures: int
    reprobe_seconds: int
    stall_seconds: int
    on_demand_idle_seconds: int


@dataclass(frozen=True)
class Web:
    https: bool
    https_port: int
    http_port: int
    server_name: str
    cert_file: Path | None
    key_file: Path | None
    cors_origins: tuple[str, ...]


@dataclass(frozen=True)
class Hls:
    fragment_seconds: int
    playlist_seconds: int


@dataclass(frozen=True)
class Fail2ban:
    maxretry: int
    findtime_seconds: int
    bantime_seconds: int


@dataclass(frozen=True)
class Auth:
    session_seconds: int  # a browser login lasts this long; its media cookies too
    link_seconds: int  # lifetime of a player link (VLC, ffplay) made on the page


@dataclass(frozen=True)
class WebSocketPort:
    """A DVR's separate WebSocket server: the Pi listens with TLS on `tls` and passes to the DVR's plain `plain`."""

    tls: int
    plain: int


@dataclass(frozen=True)
class DvrPreset:
    http_port: int
    websocket_ports: tuple[WebSocketPort, ...]
    # Where a 401 from the DVR is a failed login (fail2ban counts it) and nginx limits the rate.
    login_paths: tuple[str, ...]


# Ports a vendor's web page hard-codes in its JavaScript, which the proxy must therefore listen on.
DVR_PRESETS: dict[str, DvrPreset] = {
    # Pages on 80; video over a WebSocket server of its own on 7681, which the
    # page asks for as wss://HOST:7682 when it was loaded over HTTPS.
    "hikvision": DvrPreset(
        http_port=80,
        websocket_ports=(WebSocketPort(tls=7682, plain=7681),),
        login_paths=("/ISAPI/Security/userCheck", "/ISAPI/Security/sessionLogin"),
    ),
    # A DVR whose page carries its WebSocket on the HTTP port itself (the main
    # site passes upgrades), or whose ports are given in site.yml.
    "generic": DvrPreset(http_port=80, websocket_ports=(), login_paths=()),
}


@dataclass(frozen=True)
class DvrProxy:
    """A DVR's web interface, published through a Pi's nginx; the DVR itself stays reachable only by that Pi."""

    name: str
    pi: str  # the inventory host that proxies it
    address: str  # the DVR's IP address, as the Pi reaches it
    http_port: int
    websocket_ports: tuple[WebSocketPort, ...]
    login_paths: tuple[str, ...]
    server_name: str  # "" when it has an HTTPS port of its own and answers any name there
    https_port: int
    viewer_auth: bool  # the appliance's login in front of the DVR's own
    viewers: tuple[str, ...]  # who passes that login (all the site's viewers by default)
    cache_mb: int  # static assets (scripts, styles, images); 0: no cache
    upload_mb: int

    @property
    def ip_family(self) -> str:
        """nftables' address family keyword for this DVR's address."""
        return "ip6" if ":" in self.address else "ip"

    def listen_ports(self) -> tuple[int, ...]:
        return (self.https_port, *(w.tls for w in self.websocket_ports))


@dataclass(frozen=True)
class Site:
    directory: Path
    name: str
    hosts: tuple[Host, ...]
    cameras: tuple[Camera, ...]
    web: Web
    hls: Hls
    fail2ban: Fail2ban
    encoder_candidates: tuple[str, ...]
    extra_tcp_ports: tuple[int, ...]
    nginx_install_method: str
    viewers: tuple[str, ...]
    auth: Auth
    # viewer -> the cameras they may watch; a viewer not named in site.yml `viewers:` sees every camera.
    camera_access: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nvrs: tuple[Nvr, ...] = ()
    storage: Storage = Storage(DEFAULT_SNAPSHOTS_PATH, "", False, 10)
    capture: CaptureSchedule = CaptureSchedule(2, 5, 300, 10, 1800, 20, 60)
    # Addresses (CIDR) allowed to scrape /metrics without logging in; the Pi itself always may.
    metrics_allow: tuple[str, ...] = ()
    nginx_source: NginxSource = DEFAULT_NGINX_SOURCE
    build_hosts: tuple[Host, ...] = ()  # inventory group pi_stream_builders
    dvrs: tuple[DvrProxy, ...] = ()  # site.yml dvr_proxy

    def nvr(self, name: str) -> Nvr:
        return next(n for n in self.nvrs if n.name == name)

    def nvrs_on(self, host: str) -> tuple[Nvr, ...]:
        used = {c.source.nvr for c in self.cameras_on(host)}
        return tuple(n for n in self.nvrs if n.name in used)

    def waiting_cameras(self, host: str) -> dict[str, tuple[Camera, ...]]:
        """Per NVR, the always-on cameras beyond its session budget: they wait while higher priorities run."""
        waiting = {}
        for nvr in self.nvrs_on(host):
            ranked = sorted(
                (c for c in self.cameras_on(host) if c.source.nvr == nvr.name and not c.on_demand),
                key=lambda c: -c.priority,
            )
            if len(ranked) > nvr.max_sessions:
                waiting[nvr.name] = tuple(ranked[nvr.max_sessions :])
        return waiting

    def dvrs_on(self, host: str) -> tuple[DvrProxy, ...]:
        return tuple(d for d in self.dvrs if d.pi == host)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def cameras_on(self, host: str) -> tuple[Camera, ...]:
        return tuple(c for c in self.cameras if c.host == host)

    def cameras_for(self, viewer: str, host: str) -> tuple[Camera, ...]:
        """The cameras on `host` that `viewer` may watch."""
        allowed = self.camera_access.get(viewer)
        return tuple(c for c in self.cameras_on(host) if allowed is None or c.name in allowed)

    @property
    def viewers_file(self) -> Path:
        return self.directory / VIEWERS_FILE

    def public_tcp_ports(self, host: str) -> tuple[int, ...]:
        """Inbound TCP ports the host firewall opens: SSH first, then the web ports, then extras."""
        ports = [self.host(host).ssh_port, self.web.http_port]
        if self.web.https:
            ports.append(self.web.https_port)
        for dvr in self.dvrs_on(host):
            ports.extend(dvr.listen_ports())
        ports.extend(self.extra_tcp_ports)
        return tuple(dict.fromkeys(ports))


class Problems:
    """Collects (file, path, message) so one run reports every mistake."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, file: str, path: str, message: str) -> None:
        self.items.append((file, path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise SiteError(self.items)


class Fields:
    """Reads one YAML mapping, typed, recording problems under its field path.

    `done()` reports keys nobody asked for, with a did-you-mean: a typo like
    `camras` must be an error, not a silently ignored key.
    """

    def __init__(self, data: Any, path: str, file: str, problems: Problems) -> None:
        self.path, self.file, self.problems = path, file, problems
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.error("", f"must be a mapping (key: value), got {type_name(data)}")
            data = {}
        self.data: dict[str, Any] = data

    def at(self, key: str) -> str:
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.problems.add(self.file, self.at(key), message)

    def absent(self, key: str) -> bool:
        """Whether the mapping leaves `key` out, for a caller whose default is not a plain value; the key is known either way."""
        self.seen.add(key)
        return key not in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def string(self, key: str, default: str = "", pattern: re.Pattern | None = None, hint: str = "") -> str:
        value = self.raw(key, default)
        if value is None:
            value = default
        if not isinstance(value, str):
            self.error(key, f"must be a string, got {type_name(value)}")
            return default
        if pattern is not None and key in self.data and not pattern.match(value):
            self.error(key, f"{value!r} is not valid: {hint}")
            return default
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            self.error(key, f"{value!r} is not one of: {', '.join(choices)}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be a whole number from {low} to {high}, got {value!r}")
            return default
        if not low <= value <= high:
            self.error(key, f"{value} is out of range: use {low} to {high}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {value!r}")
            return default
        return value

    def items(self, key: str) -> list[Any]:
        value = self.raw(key, [])
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"must be a list, got {type_name(value)}")
            return []
        return value

    def sub(self, key: str) -> Fields:
        return Fields(self.raw(key, {}), self.at(key), self.file, self.problems)

    def done(self) -> None:
        for key in self.data:
            if key in self.seen:
                continue
            close = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(self.seen))}"
            self.error(str(key), f"unknown key{hint}")


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def read_yaml(path: Path, problems: Problems) -> Any:
    """Parse a YAML file; a syntax error becomes one problem with its line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(str(path), "", "file not found (create it with `pi-stream init`)")
        return None
    except OSError as exc:
        problems.add(str(path), "", f"cannot read: {exc.strerror}")
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add(str(path), "", f"invalid YAML: {where}{problem}")
        return None


def load_inventory(path: Path, problems: Problems) -> tuple[tuple[Host, ...], tuple[Host, ...]]:
    """(appliance hosts, build hosts) from an Ansible YAML inventory (all.hosts and nested children groups).

    Hosts of the `pi_stream_builders` group only build packages (nginx from
    source); they are not provisioned as appliances.
    """
    data = read_yaml(path, problems)
    if data is None:
        return (), ()
    file = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("all"), dict):
        problems.add(file, "all", "the inventory must have a top-level 'all:' group (Ansible YAML inventory)")
        return (), ()
    found: dict[str, Host] = {}
    builders: dict[str, Host] = {}

    def walk(group: dict, group_path: str, into: dict[str, Host]) -> None:
        hosts = group.get("hosts") or {}
        if not isinstance(hosts, dict):
            problems.add(file, f"{group_path}.hosts", "must be a mapping of host name to its variables")
            hosts = {}
        for name, host_vars in hosts.items():
            host_path = f"{group_path}.hosts.{name}"
            if not isinstance(name, str) or not HOST_RE.match(name) or name.startswith("_"):
                problems.add(file, host_path, "host names use letters, digits, '.', '-', '_' and do not start with '_'")
                continue
            host_vars = host_vars or {}
            if not isinstance(host_vars, dict):
                problems.add(file, host_path, "host variables must be a mapping")
                continue
            port = host_vars.get("ansible_port", 22)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                problems.add(file, f"{host_path}.ansible_port", f"{port!r} is not a TCP port (1-65535)")
                port = 22
            into.setdefault(
                name,
                Host(
                    name=name,
                    address=str(host_vars.get("ansible_host", name)),
                    ssh_port=port,
                    ssh_user=str(host_vars.get("ansible_user", "root")),
                ),
            )
        children = group.get("children") or {}
        if isinstance(children, dict):
            for child_name, child in children.items():
                target = builders if child_name == BUILDERS_GROUP else into
                walk(child or {}, f"{group_path}.children.{child_name}", target)

    walk(data["all"], "all", found)
    for name in set(found) & set(builders):
        problems.add(file, f"all.children.{BUILDERS_GROUP}.hosts.{name}", "a build host is not also an appliance host: list it once")
    if not found:
        problems.add(file, "all.hosts", "no hosts: add at least one Pi, e.g. `pi1: {ansible_host: 192.0.2.10}`")
    return tuple(found.values()), tuple(builders.values())


def load_viewers(path: Path, problems: Problems) -> tuple[str, ...]:
    """Viewer names from the credentials file; refuses a file others can read."""
    file = str(path)
    if not path.exists():
        problems.add(file, "", "no viewers: a site needs at least one; add one with `pi-stream user add SITE NAME`")
        return ()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        problems.add(
            file, "", f"permissions are {mode:04o}: password hashes must not be readable by others; run `chmod 600 {file}`"
        )
    try:
        entries = read_htpasswd(path)
    except ValueError as exc:
        problems.add(file, "", str(exc))
        return ()
    if not entries:
        problems.add(file, "", "no viewers: a site needs at least one; add one with `pi-stream user add SITE NAME`")
    for name, hashed in entries.items():
        problem = hash_problem(hashed)
        if problem:
            problems.add(file, name, f"the stored hash {problem}; set the password again with `pi-stream user passwd SITE {name}`")
    return tuple(entries)


def load_site(directory: Path | str) -> Site:
    """Load and validate a site directory; raise SiteError with every problem found."""
    directory = Path(directory)
    problems = Problems()
    if not directory.is_dir():
        problems.add(str(directory), "", "not a directory (create a site with `pi-stream init DIR`)")
        problems.raise_if_any()
    hosts, build_hosts = load_inventory(directory / INVENTORY_FILE, problems)
    viewers = load_viewers(directory / VIEWERS_FILE, problems)
    site_path = directory / SITE_FILE
    before = len(problems.items)
    data = read_yaml(site_path, problems)
    if len(problems.items) > before:
        problems.raise_if_any()  # unparsable: field-level checks would only add noise
    if data is None:
        problems.add(str(site_path), "", "the file is empty: start from `pi-stream init`")
    site = parse_site(data or {}, str(site_path), directory, hosts, viewers, problems, build_hosts)
    problems.raise_if_any()
    assert site is not None
    return site


def parse_site(
    data: Any,
    file: str,
    directory: Path,
    hosts: tuple[Host, ...],
    viewers: tuple[str, ...],
    problems: Problems,
    build_hosts: tuple[Host, ...] = (),
) -> Site | None:
    top = Fields(data, "", file, problems)
    name = top.string("name", directory.resolve().name or "site")
    web = parse_web(top.sub("web"), directory)
    hls_fields = top.sub("hls")
    hls = Hls(
        fragment_seconds=hls_fields.integer("fragment_seconds", 1, 1, 10),
        playlist_seconds=hls_fields.integer("playlist_seconds", 4, 2, 120),
    )
    if hls.playlist_seconds < 2 * hls.fragment_seconds:
        hls_fields.error("playlist_seconds", "must hold at least two fragments (2 x fragment_seconds)")
    hls_fields.done()

    encoder_fields = top.sub("encoder")
    candidates = encoder_fields.items("candidates") or list(DEFAULT_ENCODERS)
    for i, candidate in enumerate(candidates):
        if candidate not in KNOWN_ENCODERS:
            encoder_fields.error(f"candidates[{i}]", f"{candidate!r} is not one of: {', '.join(KNOWN_ENCODERS)}")
    encoder_fields.done()

    f2b = top.sub("fail2ban")
    fail2ban = Fail2ban(
        maxretry=f2b.integer("maxretry", 5, 1, 100),
        findtime_seconds=f2b.integer("findtime_seconds", 600, 10, 86400),
        bantime_seconds=f2b.integer("bantime_seconds", 3600, 10, 31536000),
    )
    f2b.done()

    firewall = top.sub("firewall")
    extra_ports = []
    for i, port in enumerate(firewall.items("extra_tcp_ports")):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            firewall.error(f"extra_tcp_ports[{i}]", f"{port!r} is not a TCP port (1-65535)")
        else:
            extra_ports.append(port)
    firewall.done()

    nginx = top.sub("nginx")
    install_method = nginx.choice("install_method", ("package", "source"), "package")
    nginx_source = parse_nginx_source(nginx.sub("source"), directory, build_hosts)
    nginx.done()

    auth_fields = top.sub("auth")
    auth = Auth(
        session_seconds=auth_fields.integer("session_hours", 12, 1, 24 * 30) * 3600,
        link_seconds=auth_fields.integer("link_days", 30, 1, 365) * 86400,
    )
    auth_fields.done()

    nvrs = parse_nvrs(top.sub("nvrs"))
    storage = parse_storage(top.sub("storage"))
    capture = parse_capture(top.sub("capture"))
    metrics_allow = parse_metrics_allow(top.sub("status"))
    cameras = parse_cameras(top, hosts, nvrs)
    check_recordings(cameras, storage, file, problems)
    camera_access = parse_camera_access(top.sub("viewers"), viewers, cameras)
    dvrs = parse_dvr_proxies(top.sub("dvr_proxy"), web, hosts, viewers)
    top.done()
    check_ports(web, hosts, tuple(extra_ports), dvrs, file, problems)
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
        encoder_candidates=tuple(candidates),
        extra_tcp_ports=tuple(extra_ports),
        nginx_install_method=install_method,
        nginx_source=nginx_source,
        build_hosts=build_hosts,
        viewers=viewers,
        auth=auth,
        camera_access=camera_access,
        nvrs=nvrs,
        storage=storage,
        capture=capture,
        metrics_allow=metrics_allow,
        dvrs=dvrs,
    )


def parse_nginx_source(section: Fields, directory: Path, build_hosts: tuple[Host, ...]) -> NginxSource:
    """`nginx.source: {nginx: {version, url|file, sha256}, rtmp_module: {...}, rtmp_module_link, build_host}`."""
    nginx = parse_source_archive(section.sub("nginx"), DEFAULT_NGINX_SOURCE.nginx, NGINX_RELEASE_URL, directory)
    module = parse_source_archive(section.sub("rtmp_module"), DEFAULT_NGINX_SOURCE.rtmp_module, RTMP_MODULE_RELEASE_URL, directory)
    link = section.choice("rtmp_module_link", ("static", "dynamic"), "static")
    build_host = section.string("build_host", "")
    if build_host and build_host not in {h.name for h in build_hosts}:
        known = ", ".join(h.name for h in build_hosts) or "none yet"
        section.error(
            "build_host",
            f"{build_host!r} is not in the inventory group {BUILDERS_GROUP} (known: {known}); add it there: "
            f"`all: {{children: {{{BUILDERS_GROUP}: {{hosts: {{{build_host}: {{ansible_host: ...}}}}}}}}}}`",
        )
        build_host = ""
    section.done()
    return NginxSource(nginx=nginx, rtmp_module=module, rtmp_module_link=link, build_host=build_host)


def parse_source_archive(fields: Fields, default: SourceArchive, url_template: str, directory: Path) -> SourceArchive:
    """A tarball by version and sha256, from `url` (default: the upstream release URL of the version) or a local `file`."""
    given = {k for k in ("version", "url", "file", "sha256") if fields.data.get(k) is not None}
    version = fields.string("version", default.version, VERSION_RE, "use the release's version, like 1.26.3")
    sha256 = fields.string("sha256", "", SHA256_RE, "64 hexadecimal digits, as `sha256sum` prints").lower()
    url = fields.string("url", "")
    file_name = fields.string("file", "")
    fields.done()
    if not given:
        return default
    if given == {"sha256"}:
        fields.error("sha256", "give the version (and url or file) this checksum belongs to")
        return default
    if not sha256:
        if "sha256" not in given:
            fields.error("sha256", "required with a version, url or file of your own: nothing is built from an unchecked download")
        return default
    if url and file_name:
        fields.error("url", "give either url or file, not both")
        return default
    if file_name:
        path = Path(file_name).expanduser()
        path = path if path.is_absolute() else directory / path
        if not path.is_file():
            fields.error("file", f"{path} does not exist (a path relative to the site directory, or absolute)")
            return default
        return SourceArchive(field=fields.path, version=version, sha256=sha256, file=path.resolve())
    if url and not re.match(r"^https?://[^/\s]+/\S+$", url):
        fields.error("url", f"{url!r} is not an http:// or https:// URL of a file")
        return default
    return SourceArchive(field=fields.path, version=version, sha256=sha256, url=url or url_template.format(version=version))


def parse_nvrs(section: Fields) -> tuple[Nvr, ...]:
    """`nvrs: {shed: {host, port, username, password, path_template, max_sessions}}`."""
    nvrs = []
    for name in list(section.data):
        entry = section.sub(str(name))
        if not isinstance(name, str) or not NAME_RE.match(name):
            entry.error("", f"{name!r} is not a valid NVR name: {NAME_HINT}")
        address = entry.string("host", "", re.compile(r"^[A-Za-z0-9.:-]+$"), "an address or DNS name like 192.0.2.64")
        if not address and "host" not in entry.data:
            entry.error("host", "missing: the NVR's address, e.g. 192.0.2.64")
        template = entry.string("path_template", "/Streaming/Channels/{channel}01")
        if "{channel}" not in template or not template.startswith("/"):
            entry.error("path_template", f"{template!r} must start with '/' and contain {{channel}}, e.g. /Streaming/Channels/{{channel}}01")
        elif re.search(r"[\s?#]|\{(?!channel\})", template):
            entry.error("path_template", f"{template!r} may hold no spaces, '?', '#' or braces other than {{channel}}")
        nvrs.append(
            Nvr(
                name=str(name),
                address=address,
                port=entry.integer("port", 554, 1, 65535),
                username=entry.string("username", ""),
                password=entry.string("password", ""),
                path_template=template,
                max_sessions=entry.integer("max_sessions", 4, 1, 256),
            )
        )
        entry.done()
    return tuple(nvrs)


def parse_dvr_proxies(section: Fields, web: Web, hosts: tuple[Host, ...], viewers: tuple[str, ...]) -> tuple[DvrProxy, ...]:
    """`dvr_proxy: {shed: {host, preset, server_name, ...}}`: DVR web interfaces published through a Pi."""
    dvrs = []
    host_names = [h.name for h in hosts]
    for name in list(section.data):
        entry = section.sub(str(name))
        if not isinstance(name, str) or not NAME_RE.match(name):
            entry.error("", f"{name!r} is not a valid DVR name: {NAME_HINT}")
        if not web.https:
            entry.error("", "a DVR proxy needs web.https: true: the DVR's login and video must not cross the network in clear")
        preset_name = entry.choice("preset", tuple(DVR_PRESETS), "hikvision")
        preset = DVR_PRESETS[preset_name]
        address = entry.string("host", "")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            hint = "missing: " if "host" not in entry.data else f"{address!r} is not an IP address: "
            entry.error("host", hint + "the DVR's address as the Pi reaches it, e.g. 192.168.1.64 (the Pi's firewall rules need an address)")
        pi = entry.string("pi", host_names[0] if len(host_names) == 1 else "")
        if not pi and host_names:
            entry.error("pi", f"several hosts in the inventory: say which one proxies this DVR ({', '.join(host_names)})")
        elif pi and host_names and pi not in host_names:
            entry.error("pi", f"{pi!r} is not in the inventory; known hosts: {', '.join(host_names)}")
        server_name = entry.string("server_name", "", DNS_NAME_RE, "a DNS name like dvr.example.org")
        https_port = entry.integer("https_port", web.https_port, 1, 65535)
        if https_port == web.https_port and not server_name and web.https:
            entry.error(
                "server_name",
                f"the DVR shares port {https_port} with the appliance (web.https_port): give it a DNS name of its own "
                "(e.g. dvr.example.org), or an https_port of its own (e.g. 8443)",
            )
        elif server_name and server_name == web.server_name:
            entry.error("server_name", f"{server_name!r} is the appliance's own web.server_name: the DVR needs a name of its own")
        auth = entry.boolean("viewer_auth", False)
        allowed = parse_dvr_viewers(entry, viewers, auth)
        dvrs.append(
            DvrProxy(
                name=str(name),
                pi=pi,
                address=address,
                http_port=entry.integer("http_port", preset.http_port, 1, 65535),
                websocket_ports=parse_websocket_ports(entry, preset),
                login_paths=parse_login_paths(entry, preset),
                server_name=server_name,
                https_port=https_port,
                viewer_auth=auth,
                viewers=allowed,
                cache_mb=entry.integer("cache_mb", 256, 0, 100_000),
                upload_mb=entry.integer("upload_mb", 128, 1, 4096),
            )
        )
        entry.done()
    return tuple(dvrs)


def parse_websocket_ports(entry: Fields, preset: DvrPreset) -> tuple[WebSocketPort, ...]:
    """`websocket_ports: [{tls: 7682, plain: 7681}]`; the preset's when not given."""
    if entry.absent("websocket_ports"):
        return preset.websocket_ports
    ports = []
    for i, item in enumerate(entry.items("websocket_ports")):
        pair = Fields(item, entry.at(f"websocket_ports[{i}]"), entry.file, entry.problems)
        for key in ("tls", "plain"):
            if key not in pair.data:
                pair.error(key, "missing: give both the port the page asks for (tls) and the DVR's own plain port (plain)")
        ports.append(WebSocketPort(tls=pair.integer("tls", 1, 1, 65535), plain=pair.integer("plain", 1, 1, 65535)))
        pair.done()
    return tuple(ports)


def parse_login_paths(entry: Fields, preset: DvrPreset) -> tuple[str, ...]:
    if entry.absent("login_paths"):
        return preset.login_paths
    paths = []
    for i, path in enumerate(entry.items("login_paths")):
        if not isinstance(path, str) or not re.match(r"^/[A-Za-z0-9/_.-]*$", path):
            entry.error(f"login_paths[{i}]", f"{path!r} is not a path prefix like /ISAPI/Security/userCheck")
        else:
            paths.append(path)
    return tuple(paths)


def parse_dvr_viewers(entry: Fields, viewers: tuple[str, ...], auth: bool) -> tuple[str, ...]:
    if entry.absent("viewers"):
        return viewers if auth else ()
    if not auth:
        entry.error("viewers", "only with viewer_auth: true (the viewers who pass the appliance's login in front of the DVR)")
    allowed = []
    for i, viewer in enumerate(entry.items("viewers")):
        if viewer not in viewers:
            entry.error(f"viewers[{i}]", f"no viewer {viewer!r} in {VIEWERS_FILE}; add it with `pi-stream user add SITE {viewer}`")
        else:
            allowed.append(viewer)
    return tuple(dict.fromkeys(allowed))


def parse_storage(section: Fields) -> Storage:
    path_re = re.compile(r"^/[A-Za-z0-9/_.-]*$")
    hint = "an absolute path like /mnt/usb/pi-stream"
    storage = Storage(
        snapshots_path=section.string("snapshots_path", DEFAULT_SNAPSHOTS_PATH, path_re, hint).rstrip("/") or "/",
        recordings_path=section.string("recordings_path", "", path_re, hint).rstrip("/"),
        recordings_on_root_fs=section.boolean("recordings_on_root_fs", False),
        min_free_percent=section.integer("min_free_percent", 10, 1, 90),
    )
    for key, value in (("snapshots_path", storage.snapshots_path), ("recordings_path", storage.recordings_path)):
        if value and (value == "/" or "/../" in value + "/" or value.startswith(SYSTEM_DIRS)):
            section.error(key, f"{value!r} is a system directory: use a directory of its own, like /mnt/usb/pi-stream")
    section.done()
    return storage


# Storage may not point into these: the retention cleaner deletes dated directories under it.
SYSTEM_DIRS = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/boot", "/proc", "/sys", "/dev", "/run")


def parse_capture(section: Fields) -> CaptureSchedule:
    schedule = CaptureSchedule(
        stagger_seconds=section.integer("stagger_seconds", 2, 0, 60),
        retry_first_seconds=section.integer("retry_first_seconds", 5, 1, 600),
        retry_max_seconds=section.integer("retry_max_seconds", 300, 1, 86400),
        disable_after_failures=section.integer("disable_after_failures", 10, 1, 1000),
        reprobe_seconds=section.integer("reprobe_minutes", 30, 1, 1440) * 60,
        stall_seconds=section.integer("stall_seconds", 20, 5, 600),
        on_demand_idle_seconds=section.integer("on_demand_idle_seconds", 60, 10, 3600),
    )
    if schedule.retry_max_seconds < schedule.retry_first_seconds:
        section.error("retry_max_seconds", "must be at least retry_first_seconds")
    section.done()
    return schedule


def parse_metrics_allow(section: Fields) -> tuple[str, ...]:
    """`status: {metrics_allow: [192.0.2.5/32]}`: who may scrape the Prometheus metrics."""
    allowed = []
    for i, entry in enumerate(section.items("metrics_allow")):
        try:
            allowed.append(str(ipaddress.ip_network(str(entry), strict=False)))
        except ValueError:
            section.error(f"metrics_allow[{i}]", f"{entry!r} is not an address or network like 192.0.2.5 or 192.0.2.0/24")
    section.done()
    return tuple(dict.fromkeys(allowed))


def check_recordings(cameras: tuple[Camera, ...], storage: Storage, file: str, problems: Problems) -> None:
    for i, camera in enumerate(cameras):
        if not camera.recording.enabled:
            continue
        if not storage.recordings_path:
            problems.add(
                file,
                f"cameras[{i}].recording.enabled",
                "set storage.recordings_path to a directory on a disk of its own (e.g. /mnt/usb/pi-stream): "
                "recordings are never written to the SD card by default",
            )
        if camera.source.encodes:
            problems.add(
                file,
                f"cameras[{i}].recording.enabled",
                f"recording copies the stream a source sends; a {camera.source.type} camera would be encoded twice: "
                "record RTSP cameras only",
            )


def parse_web(web: Fields, directory: Path) -> Web:
    https = web.boolean("https", True)
    cert = web.string("certificate", "")
    key = web.string("certificate_key", "")
    cert_file = key_file = None
    if bool(cert) != bool(key):
        web.error("certificate" if key else "certificate_key", "give both certificate and certificate_key, or neither")
    elif cert:
        cert_file, key_file = directory / cert, directory / key
        for field_name, path in (("certificate", cert_file), ("certificate_key", key_file)):
            if not path.is_file():
                web.error(field_name, f"{path} does not exist (paths are relative to the site directory)")
    origins = []
    for i, origin in enumerate(web.items("cors_origins")):
        if not isinstance(origin, str) or not re.match(r"^https?://[A-Za-z0-9.-]+(:\d+)?$", origin):
            web.error(f"cors_origins[{i}]", f"{origin!r} is not an origin like https://example.org")
        else:
            origins.append(origin)
    result = Web(
        https=https,
        https_port=web.integer("https_port", 443, 1, 65535),
        http_port=web.integer("http_port", 80, 1, 65535),
        server_name=web.string("server_name", "_", re.compile(r"^[A-Za-z0-9_.*-]+$"), "a DNS name like cam.example.org"),
        cert_file=cert_file,
        key_file=key_file,
        cors_origins=tuple(origins),
    )
    web.done()
    return result


def check_ports(web: Web, hosts: tuple[Host, ...], extra: tuple[int, ...], dvrs: tuple[DvrProxy, ...], file: str, problems: Problems) -> None:
    """Two services cannot share a port on one host, except TLS sites told apart by name (SNI and Host)."""
    # (port, owner, name): name None claims the port alone; "*" is the appliance's own site, the default
    # for its port; a DVR's server name lets it share a TLS port with others of different names.
    claims: list[tuple[int, str, str | None]] = [(RTMP_PORT, "RTMP (internal)", None), (web.http_port, "web.http_port", None)]
    if web.https:
        claims.append((web.https_port, "web.https_port", "*"))
    claims += [(port, f"firewall.extra_tcp_ports[{i}]", None) for i, port in enumerate(extra)]
    for host in hosts:
        host_claims = [(host.ssh_port, f"SSH of host {host.name}", None), *claims]
        for dvr in dvrs:
            if dvr.pi == host.name:
                host_claims.append((dvr.https_port, f"dvr_proxy.{dvr.name}.https_port", dvr.server_name or None))
                host_claims += [
                    (ws.tls, f"dvr_proxy.{dvr.name}.websocket_ports[{i}].tls", dvr.server_name or None)
                    for i, ws in enumerate(dvr.websocket_ports)
                ]
        owners: dict[int, list[tuple[str, str | None]]] = {}
        for port, owner, name in host_claims:
            previous = owners.setdefault(port, [])
            if previous and owner.startswith("firewall.extra_tcp_ports") and previous[0][0].startswith("SSH"):
                continue  # opening the SSH port again is harmless
            if previous and not shares_port(name, previous):
                first = previous[0][0]
                path = owner if not owner.startswith(("RTMP", "SSH")) else first
                hint = " or give both a server_name of their own" if name is not None and all(n is not None for _, n in previous) else ""
                problems.add(file, path, f"port {port} is already used by {first}; choose another port{hint}")
                continue
            previous.append((owner, name))


def shares_port(name: str | None, previous: list[tuple[str, str | None]]) -> bool:
    """A named TLS site may join a port whose sites all have other names (or is the appliance's default site)."""
    if name is None or name in ("*", "_"):
        return False
    return all(other is not None and other != name for _, other in previous)


def parse_cameras(top: Fields, hosts: tuple[Host, ...], nvrs: tuple[Nvr, ...] = ()) -> tuple[Camera, ...]:
    entries = top.items("cameras")
    if not entries:
        top.error("cameras", "no cameras: add at least one, e.g. `- {name: garden, source: {type: testsrc}}`")
    host_names = [h.name for h in hosts]
    cameras: list[Camera] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        cam = Fields(entry, f"cameras[{i}]", top.file, top.problems)
        name = cam.string("name", "", NAME_RE, NAME_HINT)
        if not name and "name" not in cam.data:
            cam.error("name", "missing: every camera needs a name (it becomes its URL path)")
        if name in seen:
            cam.error("name", f"{name!r} is already used by cameras[{seen[name]}]; camera names must be unique")
        elif name:
            seen[name] = i
        default_host = host_names[0] if len(host_names) == 1 else ""
        host = cam.string("host", default_host)
        if not host and host_names:
            cam.error("host", f"several hosts in the inventory: say which one runs this camera ({', '.join(host_names)})")
        elif host and host_names and host not in host_names:
            cam.error("host", f"{host!r} is not in the inventory; known hosts: {', '.join(host_names)}")
        source = parse_source(cam.sub("source"), nvrs)
        defaults = (1280, 720, 25) if source.type in ("libcamera",) else (640, 360, 15)
        width = cam.integer("width", defaults[0], 160, 3840)
        height = cam.integer("height", defaults[1], 120, 2160)
        if width % 2 or height % 2:
            cam.error("width" if width % 2 else "height", "H.264 in 4:2:0 needs an even width and height")
        cameras.append(
            Camera(
                name=name,
                host=host,
                source=source,
                width=width,
                height=height,
                fps=cam.integer("fps", defaults[2], 1, 60),
                bitrate_kbps=cam.integer("bitrate_kbps", 800, 100, 20000),
                title=cam.string("title", name),
                priority=cam.integer("priority", 50, 0, 100),
                snapshots=parse_snapshots(cam.sub("snapshots")),
                recording=parse_recording(cam.sub("recording")),
                on_demand=cam.boolean("on_demand", False),
                transcode=cam.boolean("transcode", False),
            )
        )
        if cameras[-1].transcode and source.type != "rtsp":
            cam.error("transcode", f"only RTSP sources are re-encoded; a {source.type} camera is encoded to H.264 already")
        if cameras[-1].on_demand and source.type == "libcamera":
            cam.error("on_demand", "the Pi camera starts in well under a second and holds no NVR session: leave it always on")
        cam.done()
    check_channels(top, cameras)
    return tuple(cameras)


def parse_snapshots(section: Fields) -> Snapshots:
    snapshots = Snapshots(
        interval_seconds=section.integer("interval_seconds", 10, 1, 3600),
        keep_days=section.integer("keep_days", 7, 0, 3650),
    )
    section.done()
    return snapshots


def parse_recording(section: Fields) -> Recording:
    recording = Recording(
        enabled=section.boolean("enabled", False),
        keep_days=section.integer("keep_days", 7, 1, 3650),
        segment_seconds=section.integer("segment_seconds", 300, 10, 3600),
    )
    section.done()
    return recording


def check_channels(top: Fields, cameras: list[Camera]) -> None:
    """Two cameras on one NVR channel would be two sessions for one picture."""
    owner: dict[tuple[str, int], int] = {}
    for i, camera in enumerate(cameras):
        if not camera.source.nvr:
            continue
        key = (camera.source.nvr, camera.source.channel)
        if key in owner:
            top.error(f"cameras[{i}].source.channel", f"channel {key[1]} of NVR {key[0]!r} is already cameras[{owner[key]}]")
        else:
            owner[key] = i


def parse_camera_access(section: Fields, viewers: tuple[str, ...], cameras: tuple[Camera, ...]) -> dict[str, tuple[str, ...]]:
    """`viewers: {bob: {cameras: [garden]}}`: limits a viewer to some cameras."""
    camera_names = [c.name for c in cameras]
    access: dict[str, tuple[str, ...]] = {}
    for viewer in list(section.data):
        entry = section.sub(str(viewer))
        if viewers and viewer not in viewers:
            entry.error("", f"no viewer {viewer!r} in {VIEWERS_FILE}; add it with `pi-stream user add SITE {viewer}` or remove this entry")
        allowed = []
        for i, name in enumerate(entry.items("cameras")):
            if name not in camera_names:
                entry.error(f"cameras[{i}]", f"{name!r} is not a camera of this site; cameras: {', '.join(camera_names)}")
            else:
                allowed.append(name)
        if "cameras" not in entry.data:
            entry.error("cameras", "missing: list the cameras this viewer may watch (leave the viewer out to allow all)")
        entry.done()
        access[str(viewer)] = tuple(dict.fromkeys(allowed))
    return access


def parse_source(src: Fields, nvrs: tuple[Nvr, ...] = ()) -> Source:
    if "type" not in src.data:
        src.error("type", f"missing: one of {', '.join(SOURCE_TYPES)}")
    kind = src.choice("type", SOURCE_TYPES, "testsrc")
    if kind == "rtsp" and "nvr" in src.data:
        return parse_nvr_source(src, nvrs)
    if kind == "rtsp":
        url = src.string("url", "")
        username = src.string("username", "")
        password = src.string("password", "")
        problem = rtsp_url_problem(url)
        if problem:
            src.error("url", problem)
        src.done()
        return Source(type=kind, url=url, username=username, password=password)
    if kind == "v4l2":
        device = src.string("device", "/dev/video0", re.compile(r"^/dev/[A-Za-z0-9/_.-]+$"), "a device path like /dev/video0")
        input_format = src.choice("input_format", ("", "mjpeg", "yuyv422", "h264"), "")
        src.done()
        return Source(type=kind, device=device, input_format=input_format)
    src.done()
    return Source(type=kind)


def parse_nvr_source(src: Fields, nvrs: tuple[Nvr, ...]) -> Source:
    """`source: {type: rtsp, nvr: shed, channel: 3}`: the URL and credentials come from the NVR."""
    name = src.string("nvr", "")
    channel = src.integer("channel", 1, 1, 999)
    if "channel" not in src.data:
        src.error("channel", "missing: which of the NVR's channels this camera is (1, 2, ...)")
    for key in ("url", "username", "password"):
        if key in src.data:
            src.error(key, f"comes from nvrs.{name}; a camera names either an nvr and channel or its own url")
            src.raw(key)
    nvr = next((n for n in nvrs if n.name == name), None)
    src.done()
    if nvr is None:
        known = ", ".join(n.name for n in nvrs) or "none yet: add an `nvrs:` section"
        src.error("nvr", f"{name!r} is not in nvrs; known: {known}")
        return Source(type="rtsp", nvr=name, channel=channel)
    return Source(type="rtsp", url=nvr.url(channel), username=nvr.username, password=nvr.password, nvr=name, channel=channel)


def rtsp_url_problem(url: str) -> str:
    if not url:
        return "missing: an rtsp:// URL such as rtsp://192.0.2.20:554/Streaming/Channels/101"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{redact_url(url)!r} is not a valid URL: use rtsp://HOST[:PORT]/PATH"
    if parts.scheme not in ("rtsp", "rtsps"):
        return f"{redact_url(url)!r} is not an rtsp:// URL: use rtsp://HOST[:PORT]/PATH"
    if not parts.hostname:
        return f"{redact_url(url)!r} has no host: use rtsp://HOST[:PORT]/PATH"
    if parts.username is not None or parts.password is not None:
        return "put the credentials in source.username and source.password, not in the URL (they may contain any characters there)"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is out of range"
    return ""


def redact_url(url: str) -> str:
    """A URL fit for an error message: userinfo replaced, so a password typed into a URL is never printed."""
    return re.sub(r"//[^/@]*@", "//***@", url)


# Role variables this model exports per host. tests/unit assert each role's
# meta/argument_specs.yml accepts exactly these names, so the two cannot drift.
def role_vars(site: Site, host: str) -> dict[str, dict[str, Any]]:
    cameras = site.cameras_on(host)
    tls_mode = "none" if not site.web.https else ("provided" if site.web.cert_file else "self_signed")
    return {
        "firewall": {"firewall_tcp_ports": list(site.public_tcp_ports(host))},
        "viewer_auth": {"viewer_auth_viewers_src": str(site.viewers_file.resolve())},
        "nginx_rtmp": {
            "nginx_rtmp_install_method": site.nginx_install_method,
            # Only for the source method: a package site's bundle does not change with the build files.
            "nginx_rtmp_source": nginx_source_vars(site.nginx_source) if site.nginx_install_method == "source" else {},
            "nginx_rtmp_tls_mode": tls_mode,
            "nginx_rtmp_tls_cert_src": str(site.web.cert_file.resolve()) if site.web.cert_file else "",
            "nginx_rtmp_tls_key_src": str(site.web.key_file.resolve()) if site.web.key_file else "",
            "nginx_rtmp_tls_common_name": tls_common_name(site, host),
            # The proxied DVRs' names go into the self-signed certificate too.
            "nginx_rtmp_tls_alt_names": [d.server_name for d in site.dvrs_on(host) if d.server_name],
        },
        "dvr_proxy": {"dvr_proxy_cached": [d.name for d in site.dvrs_on(host) if d.cache_mb]},
        "camera_capture": {
            "camera_capture_cameras": [c.name for c in cameras],
            "camera_capture_encoder_candidates": list(site.encoder_candidates),
            "camera_capture_encode_required": any(c.encodes for c in cameras),
            "camera_capture_storage_dirs": storage_dirs(site, host),
        },
        "fail2ban": {},
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
    if site.web.server_name not in ("_", ""):
        return site.web.server_name
    return site.host(host).address

