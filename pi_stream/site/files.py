"""The site directory's files, and reading one YAML file into data.

A file that is missing, unreadable, not UTF-8 or not YAML becomes one problem for that file
(with the line and column of a syntax error), never an exception: the caller
decides whether checking the fields would only add noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pi_stream.site.fields import Problems
from pi_stream.textfile import read_utf8

SITE_FILE = "site.yml"
INVENTORY_FILE = "inventory.yml"


def read_yaml(path: Path, problems: Problems) -> Any:
    """Parse a YAML file; a syntax error becomes one problem with its line and column."""
    try:
        text = read_utf8(path)
    except FileNotFoundError:
        problems.add(str(path), "", "file not found (create it with `pi-stream init`)")
        return None
    except OSError as exc:
        problems.add(str(path), "", f"cannot read: {exc.strerror}")
        return None
    except ValueError as exc:
        problems.add(str(path), "", str(exc))
        return None
    try:
        return yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:
        # A NUL or other control character: binary data in a text file. PyYAML says "position N in <unicode string>".
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problems.add(str(path), "", f"invalid YAML: line {line}, column {column}: character U+{exc.character:04X} is not allowed in YAML "
                     "(binary data in a text file?): remove it")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add(str(path), "", f"invalid YAML: {where}{problem}")
        return None
