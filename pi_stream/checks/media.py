"""Checks of what a logged-in viewer gets: the capture's own state, a playlist that advances, a segment a player can
start on (read in pure Python: pi_stream.checks.ts), the latest snapshot."""

from __future__ import annotations

import time
from urllib.parse import urljoin

import m3u8

from pi_stream.checks import ts
from pi_stream.site import Camera, Site
from pi_stream.status import STALE_SECONDS

# A camera still starting after this long is reported with what it is doing. Starts on one NVR are
# staggered (2 s each by default), so the last of 16 cameras starts about 30 s after the first.
CAPTURE_SETTLE_SECONDS = 60.0


def capture_state(session, url: str, camera: Camera, playlist: str, out: dict) -> tuple[bool, str]:
    """The supervisor's own view of the camera (its status.json, through the viewer's auth).

    Live passes; waiting for an NVR session passes with the reason (the site asked for more cameras
    than the budget); backing off or disabled fails with the source's last error. An on-demand
    camera is opened first, as a player would: the playlist request is what starts it.
    """
    status_url = urljoin(url, f"camera/{camera.name}/status.json")
    deadline = time.monotonic() + CAPTURE_SETTLE_SECONDS
    status: dict = {}
    while time.monotonic() < deadline:
        response = session.get(status_url)
        if response.status_code != 200:
            return False, f"status HTTP {response.status_code}"
        status = response.json()
        if time.time() - status.get("updated", 0) > STALE_SECONDS:
            return False, "status is stale: the capture supervisor is not running (journalctl -u pi-stream-capture)"
        if status["state"] == "live":
            break
        if status["state"] == "waiting":
            out.update(status)
            return True, status["detail"]
        if status["state"] == "idle":
            session.get(playlist)  # someone watching: the supervisor starts it
        time.sleep(1)
    out.update(status)
    if status.get("state") != "live":
        error = f"; last error: {status['last_error']}" if status.get("last_error") else ""
        return False, f"{status.get('state')}: {status.get('detail')}{error}"
    rate = f", {status['fps']:g} fps" if status.get("fps") else ""
    bitrate = f", {status['bitrate_kbps']:g} kbit/s" if status.get("bitrate_kbps") else ""
    return True, f"live, {status.get('codec') or 'codec unknown'}{rate}{bitrate}"


def latest_snapshot(session, url: str, camera: Camera) -> tuple[bool, str]:
    """latest.jpg comes from the live session at the camera's interval: it exists and is a JPEG."""
    snapshot_url = urljoin(url, f"camera/{camera.name}/latest.jpg")
    deadline = time.monotonic() + camera.snapshots.interval_seconds + 20
    response = session.get(snapshot_url)
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(1)
        response = session.get(snapshot_url)
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    ok = response.content[:2] == b"\xff\xd8" and response.headers.get("Content-Type") == "image/jpeg"
    return ok, f"{len(response.content)} bytes, {response.headers.get('Content-Type')}"


def fetch_playlist(session, url) -> m3u8.M3U8:
    response = session.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")
    content_type = response.headers.get("Content-Type", "")
    if "mpegurl" not in content_type:
        raise RuntimeError(f"Content-Type {content_type!r}, expected application/vnd.apple.mpegurl")
    return m3u8.loads(response.text, uri=url)


def playlist_advances(session, url, site: Site, timeout: float | None) -> tuple[bool, str]:
    """The media sequence must grow: a stale playlist means the camera stopped."""
    timeout = timeout or max(10.0, 4 * site.hls.fragment_seconds + 6)
    deadline = time.monotonic() + 30.0
    first = None
    while first is None or not first.segments:
        try:
            first = fetch_playlist(session, url)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
        if first is None or not first.segments:
            time.sleep(1)
            if time.monotonic() > deadline:
                return False, "no segments within 30 s"
    start = first.media_sequence or 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(site.hls.fragment_seconds)
        current = fetch_playlist(session, url)
        if (current.media_sequence or 0) > start:
            durations = ", ".join(f"{s.duration:.1f}" for s in current.segments)
            return True, f"sequence {start} -> {current.media_sequence}; segments {durations} s"
    return False, f"media sequence stuck at {start} for {timeout:g} s"


def segment_decodes(session, url, camera: Camera) -> tuple[bool, str]:
    """The newest segment is H.264 a player can start on (SPS, PPS, a key frame), at the camera's size for a test pattern."""
    playlist = fetch_playlist(session, url)
    if not playlist.segments:
        return False, "playlist has no segments"
    segment = playlist.segments[-1]
    response = session.get(segment.absolute_uri)
    if response.status_code != 200:
        return False, f"segment HTTP {response.status_code}"
    try:
        video = ts.inspect(response.content)
    except ts.SegmentError as exc:
        return False, f"{segment.uri}: {exc}"
    size = f"{video.width}x{video.height}"
    expected = f"{camera.width}x{camera.height}"
    ok = video.codec == "h264" and (camera.source.type != "testsrc" or size == expected)
    return ok, video.summary() + ("" if ok else f" (expected h264 {expected})")
