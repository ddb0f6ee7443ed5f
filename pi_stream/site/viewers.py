"""The viewers: `viewers.htpasswd` (who they are) and site.yml `viewers:` (which cameras each may watch).

The names come from the credentials file that `pi-stream user add` writes; the
section only limits some of them to some cameras, so it is checked against both
that file and the cameras.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from pi_stream.credentials import USER_RE, VIEWERS_FILE, hash_problem, read_htpasswd
from pi_stream.site.cameras import Camera
from pi_stream.site.fields import Fields, Problems, text_problem


NO_VIEWERS = ("no viewers: a site needs at least one; add one with `pi-stream user add SITE NAME`, "
              "or give a viewer emails: under viewers: and turn on login.oidc or login.proxy")


def load_viewers(path: Path, problems: Problems) -> tuple[str, ...]:
    """Viewer names from the credentials file (none when it is missing); refuses a file others can read."""
    file = str(path)
    if not path.exists():
        return ()  # a site of identity logins alone has none; parse_site says when there is no viewer at all
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
    for name, hashed in entries.items():
        problem = hash_problem(hashed)
        if problem:
            problems.add(file, name, f"the stored hash {problem}; set the password again with `pi-stream user passwd SITE {name}`")
    return tuple(entries)


EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{1,63}$")


@dataclass(frozen=True)
class ViewerSection:
    """What site.yml `viewers:` says: who may watch which cameras, and which identities log in as whom."""

    access: dict[str, tuple[str, ...]]  # viewer -> cameras, for the viewers it limits
    identities: dict[str, str]  # e-mail address (lower case) -> viewer
    identity_only: tuple[str, ...]  # viewers with emails and no password in viewers.htpasswd


def parse_viewers_section(section: Fields, viewers: tuple[str, ...], cameras: tuple[Camera, ...]) -> ViewerSection:
    """`viewers: {bob: {cameras: [garden]}, alice: {emails: [alice@example.org]}}`: limits a viewer to some
    cameras, and names the identities (OpenID Connect, an identity-aware proxy) that log in as that viewer.
    A viewer with emails needs no password: it may be missing from viewers.htpasswd."""
    camera_names = [c.name for c in cameras]
    access: dict[str, tuple[str, ...]] = {}
    identities: dict[str, str] = {}
    identity_only = []
    for viewer in list(section.data):
        entry = section.sub(str(viewer))
        emails = parse_emails(entry, identities, str(viewer))
        if emails and not USER_RE.fullmatch(str(viewer)):
            entry.error("", f"{viewer!r} is not a valid viewer name: 1-32 characters, lowercase letters, digits, "
                            "'_', '.', '-', starting with a letter or '_'")
        elif viewers and viewer not in viewers and not emails:
            entry.error("", f"no viewer {viewer!r} in {VIEWERS_FILE}; add it with `pi-stream user add SITE {viewer}`, "
                            "give it emails: to log in by identity, or remove this entry")
        elif viewer not in viewers and emails:
            identity_only.append(str(viewer))
        if "cameras" not in entry.data:
            if not emails:
                entry.error("cameras", "missing: list the cameras this viewer may watch (leave the viewer out to allow all)")
            entry.seen.add("cameras")
            entry.done()
            continue
        allowed = []
        for i, name in enumerate(entry.items("cameras")):
            if name not in camera_names:
                entry.error(f"cameras[{i}]", f"{name!r} is not a camera of this site; cameras: {', '.join(camera_names)}")
            else:
                allowed.append(name)
        entry.done()
        access[str(viewer)] = tuple(dict.fromkeys(allowed))
    return ViewerSection(access=access, identities=identities, identity_only=tuple(identity_only))


def parse_emails(entry: Fields, identities: dict[str, str], viewer: str) -> list[str]:
    """A viewer's `emails:`, lower-cased (providers differ in case; the login service compares lower case),
    each added to `identities`. One address logging in as two viewers is an error: which one would it be?"""
    emails = []
    for i, value in enumerate(entry.items("emails")):
        if not isinstance(value, str) or text_problem(value, EMAIL_RE):
            entry.error(f"emails[{i}]", f"{value!r} is not an e-mail address, e.g. alice@example.org")
            continue
        email = value.lower()
        if identities.get(email, viewer) != viewer:
            entry.error(f"emails[{i}]", f"{email} already logs in as viewer {identities[email]!r}: an identity is one viewer")
            continue
        identities[email] = viewer
        emails.append(email)
    return emails


def parse_camera_access(section: Fields, viewers: tuple[str, ...], cameras: tuple[Camera, ...]) -> dict[str, tuple[str, ...]]:
    """The camera limits of `viewers:` alone (see parse_viewers_section)."""
    return parse_viewers_section(section, viewers, cameras).access
