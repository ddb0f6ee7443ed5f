"""What the capture supervisor on the Pi runs: one ffmpeg per camera, every output from one source session.

The supervisor (templates/usr/local/lib/pi-stream/pi_stream_capture.py) holds no
ffmpeg knowledge: it starts the argv rendered here, in parts, so that it can
leave the recording out while the disk is short. The parts land in
/etc/pi-stream/capture.json, which is part of the bundle and holds no secret:
a camera whose source needs credentials gets its URL from a root-only file
that systemd hands the service as a credential.

Why one process per camera with several outputs: a consumer NVR allows a few
RTSP sessions, and a fresh ffmpeg per snapshot opens one per frame (DESIGN.md
measured ~1,200 connections per camera per hour). Here live HLS, snapshots and
recording share the one session for as long as it lasts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pi_stream.site import Camera, Site

RUNTIME_DIR = "/run/pi-stream-capture"
CONFIG_PATH = "/etc/pi-stream/capture.json"
SOURCES_CREDENTIAL = "sources"  # LoadCredential name: {camera: URL with credentials}
THUMBNAIL_SIZE = (320, 180)
# RTSP socket timeout in microseconds: a source that stops sending ends ffmpeg instead of hanging it.
RTSP_TIMEOUT_US = 10_000_000
SOURCE_PLACEHOLDER = "{source_url}"
ENCODER_PLACEHOLDER = "{encoder_args}"  # replaced by PI_STREAM_ENCODER_ARGS from the encoder probe


def site_slug(site: Site) -> str:
    """The site's name as one path segment: snapshots live under STORAGE/SITE/CAMERA/DATE/."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", site.name).strip(".-") or "site"


def thumbnail_filter() -> str:
    width, height = THUMBNAIL_SIZE
    # Letterboxed, so a 4:3 camera still gives an exact 320x180 tile.
    return f"scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2"


def input_args(camera: Camera, paths: Mapping[str, str]) -> list[str]:
    src = camera.source
    if src.type == "testsrc":
        clock = (
            f"drawtext=fontfile={paths['font']}:text=%{{localtime}}:x=16:y=16"
            f":fontsize={camera.height // 12}:fontcolor=white:box=1:boxcolor=black@0.6"
        )
        return ["-re", "-f", "lavfi", "-i", f"testsrc2=size={camera.width}x{camera.height}:rate={camera.fps},{clock}"]
    if src.type == "v4l2":
        fmt = ["-input_format", src.input_format] if src.input_format else []
        return ["-f", "v4l2", *fmt, "-video_size", f"{camera.width}x{camera.height}", "-framerate", str(camera.fps), "-i", src.device]
    if src.type == "libcamera":
        # rpicam-vid encodes (in hardware where the Pi has an encoder) and pipes raw H.264 to ffmpeg's stdin.
        return ["-f", "h264", "-framerate", str(camera.fps), "-i", "pipe:0"]
    skip = [] if camera.transcode else ["-skip_frame", "nokey"]
    return ["-rtsp_transport", "tcp", "-timeout", str(RTSP_TIMEOUT_US), *skip, "-i", SOURCE_PLACEHOLDER]


def pipe_from(camera: Camera, site: Site, paths: Mapping[str, str]) -> list[str]:
    """A producer whose stdout feeds ffmpeg (the Pi camera), or nothing."""
    if camera.source.type != "libcamera":
        return []
    gop = camera.fps * site.hls.fragment_seconds
    return [
        paths["rpicam_vid"], "-t", "0", "-n", "--width", str(camera.width), "--height", str(camera.height),
        "--framerate", str(camera.fps), "--intra", str(gop), "--inline",
        "--bitrate", str(camera.bitrate_kbps * 1000), "--codec", "h264", "-o", "-",
    ]  # fmt: skip


def filter_graph(camera: Camera) -> str:
    """Snapshots and thumbnails from the frames of the one input.

    A copied source is decoded only at keyframes (`-skip_frame nokey` on the
    input): snapshots cost a decode every GOP, not every frame, which matters
    on a Pi with many NVR channels.

    The live picture of an encoded camera is never a branch of this graph.
    ffmpeg 7 pulls a filter graph's outputs oldest first, so a live branch
    beside an output that emits once every N seconds is held back and sent in
    N-second bursts, and nginx-rtmp drops the publisher as idle. Mapping the
    decoded input a second time gives live its own graph and its own pace.
    """
    rate = f"fps=1/{camera.snapshots.interval_seconds}"
    return f"[0:v:0]{rate},split=2[snap][small];[small]{thumbnail_filter()}[thumb]"


def live_args(camera: Camera, site: Site, publish_url: str) -> list[str]:
    tail = ["-bsf:v", "dump_extra=freq=keyframe", "-an", "-f", "flv", publish_url]
    if not camera.encodes:
        return ["-map", "0:v:0", "-c:v", "copy", *tail]
    scale = (
        ["-filter:v", f"scale={camera.width}:{camera.height}:force_original_aspect_ratio=decrease,fps={camera.fps}"]
        if camera.transcode
        else []
    )
    gop = camera.fps * site.hls.fragment_seconds
    rate = f"{camera.bitrate_kbps}k"
    return [
        "-map", "0:v:0", *scale, ENCODER_PLACEHOLDER, "-b:v", rate, "-maxrate", rate, "-bufsize", f"{camera.bitrate_kbps * 2}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{site.hls.fragment_seconds})", *tail,
    ]  # fmt: skip


def snapshot_args(camera: Camera, runtime_dir: str) -> list[str]:
    """Numbered, atomically written frames the supervisor files into the dated series.

    Numbers, not timestamps, pair each frame with its thumbnail: two outputs
    written either side of a second boundary would get different names.
    """
    directory = f"{runtime_dir}/snapshots/{camera.name}"
    frames = ["-f", "image2", "-atomic_writing", "1"]
    return [
        "-map", "[snap]", "-q:v", "4", *frames, f"{directory}/snap-%06d.jpg",
        "-map", "[thumb]", "-q:v", "6", *frames, f"{directory}/thumb-%06d.jpg",
    ]  # fmt: skip


def recording_args(camera: Camera, site: Site) -> list[str]:
    """Segments cut at keyframes without re-encoding, in fragmented MP4 so a segment being written still plays."""
    if not camera.recording.enabled:
        return []
    directory = recording_dir(camera, site)
    return [
        "-map", "0:v:0", "-c:v", "copy", "-an", "-f", "segment",
        "-segment_time", str(camera.recording.segment_seconds), "-segment_atclocktime", "1",
        "-reset_timestamps", "1", "-strftime", "1", "-segment_format", "mp4",
        "-segment_format_options", "movflags=+frag_keyframe+empty_moov+default_base_moof",
        f"{directory}/%Y-%m-%d/%H%M%S.mp4",
    ]  # fmt: skip


def snapshot_root(site: Site) -> str:
    """STORAGE/SITE: cameras' snapshot series below it, one directory each (nginx aliases it too)."""
    return f"{site.storage.snapshots_path}/{site_slug(site)}"


def recording_root(site: Site) -> str:
    return f"{site.storage.recordings_path}/{site_slug(site)}" if site.storage.recordings_path else ""


def snapshot_dir(camera: Camera, site: Site) -> str:
    return f"{snapshot_root(site)}/{camera.name}"


def recording_dir(camera: Camera, site: Site) -> str:
    return f"{recording_root(site)}/{camera.name}" if camera.recording.enabled else ""


def camera_config(camera: Camera, site: Site, paths: Mapping[str, str], publish_url: str) -> dict[str, Any]:
    return {
        "name": camera.name,
        "title": camera.title,
        "priority": camera.priority,
        "nvr": camera.source.nvr or None,
        "source_type": camera.source.type,
        "on_demand": camera.on_demand,
        "transcode": camera.transcode,
        # Without credentials: a camera that has them reads its URL from the service credential.
        "source_url": camera.source.url if camera.source.type == "rtsp" else "",
        "pipe_from": pipe_from(camera, site, paths),
        "input": input_args(camera, paths),
        "filter": filter_graph(camera),
        "live": live_args(camera, site, publish_url),
        "snapshots": snapshot_args(camera, paths["capture_runtime"]),
        "recording": recording_args(camera, site),
        "snapshot_interval_seconds": camera.snapshots.interval_seconds,
        "snapshot_dir": snapshot_dir(camera, site) if camera.snapshots.keep_days else "",
        "snapshot_keep_days": camera.snapshots.keep_days,
        "recording_dir": recording_dir(camera, site),
        "recording_keep_days": camera.recording.keep_days if camera.recording.enabled else 0,
    }


def supervisor_config(site: Site, host: str, paths: Mapping[str, str], publish_url: str) -> dict[str, Any]:
    """The whole of /etc/pi-stream/capture.json for one host. `publish_url` has a {camera} slot."""
    schedule = site.capture
    return {
        "site": site.name,
        # -y: an unattended ffmpeg must never stop at an "overwrite?" prompt (a recording segment name reused after a restart).
        "ffmpeg": [
            paths["ffmpeg"], "-hide_banner", "-nostats", "-y", "-loglevel", "repeat+level+info", "-progress", "pipe:1", "-stats_period", "2",
        ],  # fmt: skip
        "encoder_env": paths["encoder_env"],
        "runtime_dir": paths["capture_runtime"],
        "schedule": {
            "stagger_seconds": schedule.stagger_seconds,
            "retry_first_seconds": schedule.retry_first_seconds,
            "retry_max_seconds": schedule.retry_max_seconds,
            "disable_after_failures": schedule.disable_after_failures,
            "reprobe_seconds": schedule.reprobe_seconds,
            "stall_seconds": schedule.stall_seconds,
            "on_demand_idle_seconds": schedule.on_demand_idle_seconds,
        },
        "storage": {
            "snapshots_path": site.storage.snapshots_path,
            "recordings_path": site.storage.recordings_path,
            "recordings_on_root_fs": site.storage.recordings_on_root_fs,
            "min_free_percent": site.storage.min_free_percent,
        },
        "nvrs": [{"name": n.name, "max_sessions": n.max_sessions} for n in site.nvrs_on(host)],
        "cameras": [camera_config(c, site, paths, publish_url.replace("{camera}", c.name)) for c in site.cameras_on(host)],
    }


def source_credentials(site: Site, host: str) -> dict[str, str]:
    """Secret: per camera with credentials, its URL with them (percent-encoded). Never in the bundle."""
    return {c.name: c.source.ffmpeg_url() for c in site.cameras_on(host) if c.source.type == "rtsp" and c.source.username}
