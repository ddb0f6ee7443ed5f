"""The field-checking engine every section module uses: `Fields` reads one YAML mapping, typed.

Each check that fails records a problem under the field's path (`cameras[1].fps`)
and returns the default, so parsing goes on and one run reports every mistake;
`Problems` collects them and raises one `SiteError`. The name pattern lives here
because NVRs, DVRs and cameras share it (their names become file names and URLs);
a pattern only one section uses lives in that section's module.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from typing import Any

from pi_stream.credentials import VIEWERS_FILE
from pi_stream.errors import SiteError

# Names become file names, systemd instance names and URL path segments.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NAME_HINT = "use 1-32 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"

# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: one in a value would end a line of
# nginx.conf, an env file or htpasswd early, so no string of the site may hold one, a password included.
CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")
CHARACTER_NAMES = {"\n": "a line break (\\n)", "\r": "a carriage return (\\r)", "\t": "a tab (\\t)", "\0": "a NUL character"}


def text_problem(value: str, pattern: re.Pattern | None = None, mismatch: str = "") -> str:
    """The one check of a string read from the site's files: what is wrong with it and the fix, or "" when nothing is.

    The pattern must match the WHOLE string (`fullmatch`): with `re.match`, a pattern's `$` also matches before a
    trailing newline, so `name: "cam\\n"` passed every check and broke nginx.conf at deploy. The message never quotes
    the value when it holds a control character, so a password's never reaches the terminal.
    """
    for position, char in enumerate(value):
        if unicodedata.category(char) in CONTROL_CATEGORIES:
            kind = "a control character" if unicodedata.category(char) == "Cc" else "a Unicode line separator"
            what = CHARACTER_NAMES.get(char, f"{kind} (U+{ord(char):04X})")
            where = "at the end" if position == len(value) - 1 else f"at character {position + 1} of {len(value)}"
            return (f"holds {what} {where}: remove it (a YAML block scalar `|`, or \\n inside double quotes, puts one there); "
                    "values go into one-line config and credential files, so none may hold one, not even a password")
    if pattern is not None and not pattern.fullmatch(value):
        return mismatch or f"{value!r} is not valid"
    return ""


def printable(text: str) -> str:
    """A field path fit for a one-line message: a control character in a key is shown escaped, as repr() would."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in CONTROL_CATEGORIES else c for c in text)


class Problems:
    """Collects (file, path, message) so one run reports every mistake."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, file: str, path: str, message: str) -> None:
        self.items.append((file, printable(path), message))

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
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A checksum or version of digits only: YAML made a number of it, maybe dropping leading zeros.
            self.error(key, f'must be a string, got a number: YAML reads unquoted digits as one, so put the value in quotes: {key}: "..."')
            return default
        if not isinstance(value, str):
            self.error(key, f"must be a string, got {type_name(value)}")
            return default
        problem = text_problem(value, pattern, f"{value!r} is not valid: {hint}") if key in self.data else ""
        if problem:
            self.error(key, problem)
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

    def viewer_names(self, key: str, viewers: tuple[str, ...]) -> tuple[str, ...]:
        """A list of viewers' names (no repeats, site order kept); each one not in viewers.htpasswd is an error saying how to add it."""
        named = []
        for i, name in enumerate(self.items(key)):
            if name not in viewers:
                self.error(f"{key}[{i}]", f"no viewer {name!r} in {VIEWERS_FILE}; add it with `pi-stream user add SITE {name}`")
            else:
                named.append(name)
        return tuple(dict.fromkeys(named))

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
