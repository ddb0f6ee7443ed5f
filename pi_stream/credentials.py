"""Viewer credentials: one path for secrets, never into logs, argv or error messages.

The site's `viewers.htpasswd` holds `name:hash` lines, bcrypt (`$2b$`). The
hash is checked once per login by the appliance's login service
(pi-stream-auth), never per media request: media requests carry a signed
token that nginx checks with an MD5 (secure_link). So the hash can be slow
without costing viewers anything (see README, "How viewers log in").
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from passlib.hash import bcrypt

from pi_stream.errors import PiStreamError, SiteError
from pi_stream.textfile import read_utf8

# The site's credentials file: `name:hash` lines, installed for the login service on the Pi.
VIEWERS_FILE = "viewers.htpasswd"

# Cost 11: one check took 118 ms on the 2-core x86 CI machine (cost 12: 236 ms), so
# ~0.5 s on a Pi 4 core and ~2.5 s on a Pi Zero, paid once per login. Cost 12 would
# make a Pi Zero's login take five seconds for no gain a rate-limited login needs.
BCRYPT_COST = 11
MIN_BCRYPT_COST = 10
BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
# bcrypt reads at most 72 bytes: a longer password would silently match on its prefix.
MAX_PASSWORD_BYTES = 72
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MIN_PASSWORD_LENGTH = 8


def viewers_path(site_dir: Path) -> Path:
    return Path(site_dir) / VIEWERS_FILE


def read_htpasswd(path: Path) -> dict[str, str]:
    """name -> hash. Raises ValueError naming the line (never its content) on a malformed file, or saying it is not UTF-8."""
    entries: dict[str, str] = {}
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not USER_RE.fullmatch(name) or not hashed:
            raise ValueError(f"line {number} is not 'name:hash'; fix it or remove it with `pi-stream user remove`")
        entries[name] = hashed
    return entries


def write_private_file(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a crash leaves the old file, never a half one or a readable one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_htpasswd(path: Path, entries: dict[str, str]) -> None:
    write_private_file(path, "".join(f"{name}:{hashed}\n" for name, hashed in sorted(entries.items())))


def check_user_name(name: str) -> None:
    if not USER_RE.fullmatch(name):
        raise SiteError(
            [(str(VIEWERS_FILE), "", f"{name!r} is not a valid user name: use lowercase letters, digits, '.', '-', '_'")]
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PiStreamError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if "\n" in password or "\r" in password:
        raise PiStreamError("password must be on one line")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PiStreamError(f"password too long: bcrypt uses at most {MAX_PASSWORD_BYTES} bytes, use fewer characters")


def hash_password(password: str) -> str:
    return bcrypt.using(rounds=BCRYPT_COST, ident="2b").hash(password)


def verify_password(password: str, hashed: str) -> bool:
    return hash_problem(hashed) == "" and bcrypt.verify(password, hashed)


def hash_problem(hashed: str) -> str:
    """Why a stored hash is not acceptable ('' when it is): bcrypt only, cost >= MIN_BCRYPT_COST."""
    match = BCRYPT_RE.fullmatch(hashed)
    if not match:
        return "is not a bcrypt hash (an older pi-stream wrote sha512-crypt, which the login service does not read)"
    if int(match.group(1)) < MIN_BCRYPT_COST:
        return f"uses bcrypt cost {int(match.group(1))}, below {MIN_BCRYPT_COST}"
    return ""


def add_user(site_dir: Path, name: str, password: str) -> bool:
    """Add or replace a viewer. Returns True when the user already existed (password changed)."""
    check_user_name(name)
    check_password(password)
    path = viewers_path(site_dir)
    entries = site_viewers(path)
    existed = name in entries
    entries[name] = hash_password(password)
    write_htpasswd(path, entries)
    return existed


def remove_user(site_dir: Path, name: str) -> None:
    path = viewers_path(site_dir)
    entries = site_viewers(path)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise PiStreamError(f"{path}: no viewer named {name!r} (viewers: {known})")
    del entries[name]
    write_htpasswd(path, entries)


def list_users(site_dir: Path) -> list[str]:
    return sorted(site_viewers(viewers_path(site_dir)))


def site_viewers(path: Path) -> dict[str, str]:
    """The file's entries for the `user` commands: none yet when it does not exist; a broken file is the site's error (exit 3)."""
    if not path.exists():
        return {}
    try:
        return read_htpasswd(path)
    except ValueError as exc:
        raise SiteError([(str(path), "", str(exc))]) from None


def generate_password() -> str:
    """A password for the demo viewer: 16 URL-safe characters, typed once into a browser prompt."""
    return secrets.token_urlsafe(12)
