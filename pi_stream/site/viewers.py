"""The viewers: `viewers.htpasswd` (who they are) and site.yml `viewers:` (which cameras each may watch).

The names come from the credentials file that `pi-stream user add` writes; the
section only limits some of them to some cameras, so it is checked against both
that file and the cameras.
"""

from __future__ import annotations

import stat
from pathlib import Path

from pi_stream.credentials import VIEWERS_FILE, hash_problem, read_htpasswd
from pi_stream.site.cameras import Camera
from pi_stream.site.fields import Fields, Problems


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
