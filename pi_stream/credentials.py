"""Viewer credentials: one path for secrets, never into logs, argv or error messages.

The site's `viewers.htpasswd` holds `name:hash` lines that nginx's auth_basic
reads through crypt(3). The hash is sha512-crypt with explicit rounds:
glibc's crypt on Debian/Raspberry Pi OS verifies it natively, and the rounds
are a deliberate trade-off, because nginx checks basic-auth hashes on every
request inside the worker that serves video (see ../shared/DESIGN.md:
bcrypt cost 12 gives ~3 requests/s). Issue 4 moves the slow check to login.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from passlib.hash import sha512_crypt

from pi_stream.errors import PiStreamError, SiteError

# The site's credentials file: `name:hash` lines, read by nginx's auth_basic_user_file.
VIEWERS_FILE = "viewers.htpasswd"

# glibc's crypt(3), which nginx calls, took ~9 ms per check at these rounds on the 2-core
# x86 CI machine (2026-11-23); a Pi core is slower. Each media request pays it (issue 4).
SHA512_ROUNDS = 10_000
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MIN_PASSWORD_LENGTH = 8


def viewers_path(site_dir: Path) -> Path:
    return Path(site_dir) / VIEWERS_FILE


def read_htpasswd(path: Path) -> dict[str, str]:
    """name -> hash. Raises ValueError naming the line (never its content) on a malformed file."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not USER_RE.match(name) or not hashed:
            raise ValueError(f"line {number} is not 'name:hash'; fix it or remove it with `pi-stream user remove`")
        entries[name] = hashed
    return entries


def write_htpasswd(path: Path, entries: dict[str, str]) -> None:
    """Write atomically with mode 0600: a crash leaves the old file, never a half one or a readable one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".viewers.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name}:{hashed}\n" for name, hashed in sorted(entries.items()))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_user_name(name: str) -> None:
    if not USER_RE.match(name):
        raise SiteError(
            [(str(VIEWERS_FILE), "", f"{name!r} is not a valid user name: use lowercase letters, digits, '.', '-', '_'")]
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PiStreamError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if "\n" in password or "\r" in password:
        raise PiStreamError("password must be on one line")


def hash_password(password: str) -> str:
    return sha512_crypt.using(rounds=SHA512_ROUNDS).hash(password)


def verify_password(password: str, hashed: str) -> bool:
    return sha512_crypt.verify(password, hashed)


def add_user(site_dir: Path, name: str, password: str) -> bool:
    """Add or replace a viewer. Returns True when the user already existed (password changed)."""
    check_user_name(name)
    check_password(password)
    path = viewers_path(site_dir)
    entries = read_htpasswd(path) if path.exists() else {}
    existed = name in entries
    entries[name] = hash_password(password)
    write_htpasswd(path, entries)
    return existed


def remove_user(site_dir: Path, name: str) -> None:
    path = viewers_path(site_dir)
    entries = read_htpasswd(path) if path.exists() else {}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise PiStreamError(f"{path}: no viewer named {name!r} (viewers: {known})")
    del entries[name]
    write_htpasswd(path, entries)


def list_users(site_dir: Path) -> list[str]:
    path = viewers_path(site_dir)
    return sorted(read_htpasswd(path)) if path.exists() else []


def generate_password() -> str:
    """A password for the demo viewer: 16 URL-safe characters, typed once into a browser prompt."""
    return secrets.token_urlsafe(12)
