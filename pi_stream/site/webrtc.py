"""site.yml `webrtc:`: sub-second live view through OvenMediaEngine (OME), beside HLS.

OME takes each camera from the Pi's own nginx-rtmp (nginx pushes the stream it
already has to OME's RTMP port on loopback), never from the camera or NVR
itself, so an NVR still sees one session per camera however many engines and
viewers there are. Browsers reach OME's signalling only through nginx, behind
the same login and per-camera token as HLS; media goes over OME's TCP relay
(TURN over TCP on `relay_port`), the one path that works behind NAT and
firewalls that drop UDP. The relay's address in the offer is `public_address`
(what a remote browser dials, e.g. the router's), or the Pi's own address for a
site watched on the LAN only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from pi_stream.nginx_source import SourceArchive
from pi_stream.site.dvr_proxy import DNS_NAME_RE
from pi_stream.site.fields import Fields, text_problem
from pi_stream.site.inventory import Host
from pi_stream.site.nginx import parse_build_host, parse_source_archive

# OME's own ports, used on the Pi's loopback (nginx in front) and closed by the firewall.
OME_RTMP_PORT = 1940  # nginx-rtmp pushes each camera here
OME_SIGNALLING_PORT = 3333  # WebSocket signalling; nginx proxies /webrtc/CAMERA/ to it
OME_API_PORT = 8081  # OME's REST API: verify and status read streams and sessions from it
OME_UDP_ICE_PORT = 10000  # OME binds it for UDP ICE; closed by the firewall, as TcpForce makes every viewer use the relay
INTERNAL_PORTS = (OME_RTMP_PORT, OME_SIGNALLING_PORT, OME_API_PORT)

OME_RELEASE_URL = "https://github.com/AirenSoft/OvenMediaEngine/archive/refs/tags/v{version}.tar.gz"
# spdlog is the one library OME cannot take from Debian 12: OME patches spdlog's
# log record (a pthread handle for thread names), which changes its layout, and
# includes the headers of the spdlog 1.15 it pins. Debian's own source of 1.15.2
# (from trixie's pool, its bundled fmt removed) builds against bookworm's fmt 9.
SPDLOG_RELEASE_URL = "https://deb.debian.org/debian/pool/main/s/spdlog/spdlog_{version}+ds.orig.tar.xz"
DEFAULT_OME_SOURCE = SourceArchive(
    field="webrtc.source.ome",
    version="0.19.0",
    # The release tarball of the tag v0.19.0, as ../shared/vendor/README.md records it.
    sha256="5bf52a60da6956832a89b41d5ff45b90feec4615692d6913b1415e1cf730d72a",
    url=OME_RELEASE_URL.format(version="0.19.0"),
)
DEFAULT_SPDLOG_SOURCE = SourceArchive(
    field="webrtc.source.spdlog",
    version="1.15.2",
    sha256="47c34d1efd947b6b81fe514dc772a8fb7c3a781050f7b19c09099575c16f6d5f",
    url=SPDLOG_RELEASE_URL.format(version="1.15.2"),
)
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class OmeSource:
    ome: SourceArchive
    spdlog: SourceArchive
    build_host: str = ""  # an inventory host of the pi_stream_builders group; "" = each Pi builds for itself
    # False: no compiler optimisation or debug information, about 2.4x faster to build (for
    # trying a site out, and the lab); OME then spends more CPU per viewer.
    optimize: bool = True


DEFAULT_OME_BUILD = OmeSource(ome=DEFAULT_OME_SOURCE, spdlog=DEFAULT_SPDLOG_SOURCE)


@dataclass(frozen=True)
class WebRtc:
    cameras: tuple[str, ...]  # the cameras offered over WebRTC; the others play HLS only
    public_address: str  # put in the offer's TURN URL; "" = each Pi's own address (watched on the LAN only)
    relay_port: int  # OME's TCP relay: open on the Pi, and forwarded on the router for remote viewers
    install_method: str  # source | container
    source: OmeSource = DEFAULT_OME_BUILD
    image: str = ""  # for install_method container: OME's image, pinned by digest
    engine: str = "ome"

    def relay_address(self, host: Host) -> str:
        return self.public_address or host.address

    def serves(self, camera: str) -> bool:
        return camera in self.cameras


def parse_webrtc(section: Fields, camera_names: tuple[str, ...], on_demand: frozenset[str], directory: Path,
                 build_hosts: tuple[Host, ...]) -> WebRtc:
    """`webrtc: {engine: ome, cameras: [...], public_address, relay_port, install_method, source: {...}, image}`."""
    section.choice("engine", ("ome",), "ome")
    cameras = parse_webrtc_cameras(section, camera_names, on_demand)
    public_address = section.string("public_address", "")
    if public_address and not is_address_or_name(public_address):
        section.error("public_address", f"{public_address!r} is not an IP address or DNS name: give what remote browsers dial, "
                                        "like cam.example.org or 203.0.113.7, or leave it out for a LAN-only site")
        public_address = ""
    relay_port = section.integer("relay_port", 3478, 1, 65535)
    install_method = section.choice("install_method", ("source", "container"), "source")
    source = parse_ome_source(section.sub("source"), directory, build_hosts)
    image = section.string("image", "")
    if image and text_problem(image, IMAGE_RE):
        section.error("image", f"{image!r} is not pinned by digest: give it as NAME@sha256:DIGEST "
                               "(`podman image inspect --format '{{.Digest}}' IMAGE` prints it), so every Pi runs the same bytes")
        image = ""
    elif install_method == "container" and not image and "image" not in section.data:
        section.error("image", "required with install_method: container: OME's image pinned by digest, "
                               "like docker.io/airensoft/ovenmediaengine@sha256:...")
    section.done()
    return WebRtc(cameras=cameras, public_address=public_address, relay_port=relay_port,
                  install_method=install_method, source=source, image=image)


def parse_webrtc_cameras(section: Fields, camera_names: tuple[str, ...], on_demand: frozenset[str]) -> tuple[str, ...]:
    """The listed cameras, or by default every camera that is always on.

    An on_demand camera is pulled only while its HLS playlist is asked for; a
    WebRTC viewer asks for none, and OME would wait 250 frames for each new
    stream besides. So WebRTC needs the camera always on."""
    if section.absent("cameras"):
        return tuple(name for name in camera_names if name not in on_demand)
    chosen: list[str] = []
    entries = section.items("cameras")
    for i, name in enumerate(entries):
        if name not in camera_names:
            known = ", ".join(camera_names) or "none"
            section.error(f"cameras[{i}]", f"{name!r} is not a camera of this site (cameras: {known})")
        elif name in on_demand:
            section.error(f"cameras[{i}]", f"{name!r} is on_demand, pulled only while its HLS playlist is watched, "
                                           "which a WebRTC viewer never asks for: remove on_demand from the camera, "
                                           "or leave it out of webrtc.cameras")
        elif name in chosen:
            section.error(f"cameras[{i}]", f"{name!r} is listed twice")
        else:
            chosen.append(name)
    if not entries:
        section.error("cameras", "empty: list the cameras to offer over WebRTC, or leave the key out for all of them")
    return tuple(chosen)


def parse_ome_source(section: Fields, directory: Path, build_hosts: tuple[Host, ...]) -> OmeSource:
    """`webrtc.source: {ome: {version, url|file, sha256}, spdlog: {...}, build_host, optimize}` for install_method source."""
    ome = parse_source_archive(section.sub("ome"), DEFAULT_OME_SOURCE, OME_RELEASE_URL, directory)
    spdlog = parse_source_archive(section.sub("spdlog"), DEFAULT_SPDLOG_SOURCE, SPDLOG_RELEASE_URL, directory)
    build_host = parse_build_host(section, build_hosts)
    optimize = section.boolean("optimize", True)
    section.done()
    return OmeSource(ome=ome, spdlog=spdlog, build_host=build_host, optimize=optimize)


def is_address_or_name(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return not text_problem(value, DNS_NAME_RE) and not value.replace(".", "").isdigit()
    return True
