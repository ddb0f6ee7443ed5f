"""site.yml `cameras:`: each camera, its source, its snapshots and its recording.

A source is a test pattern, a USB webcam, the Pi camera, or RTSP given by URL or
as a channel of an NVR (`nvrs:`, checked first, so a channel can be looked up).
RTSP credentials stay out of the URL and out of every message (`redact_url`).
Whether recording fits the storage is checked in storage.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from pi_stream.site.fields import NAME_HINT, NAME_RE, Fields
from pi_stream.site.inventory import Host
from pi_stream.site.nvrs import Nvr

SOURCE_TYPES = ("testsrc", "v4l2", "libcamera", "rtsp")


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
