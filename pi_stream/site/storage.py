"""site.yml `storage:`: where snapshots and recordings go on the Pi, and the free space kept.

Recordings never go to the SD card unless the site names a directory for them;
`check_recordings` enforces that for each camera that records, which is why this
module reads cameras too. No path may point into a system directory: the
retention cleaner deletes dated directories under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pi_stream.site.cameras import Camera
from pi_stream.site.fields import Fields, Problems

# On the Pi: /srv holds what the host serves (FHS), and nginx serves the snapshots from here.
DEFAULT_SNAPSHOTS_PATH = "/srv/pi-stream/snapshots"


@dataclass(frozen=True)
class Storage:
    snapshots_path: str
    recordings_path: str  # "" until the site names a disk: recordings never go to the SD card by default
    recordings_on_root_fs: bool  # allow recordings_path on the root file system (tests, or a Pi booting from SSD)
    min_free_percent: int  # below this, snapshots and recordings stop being written


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
