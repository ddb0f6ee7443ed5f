"""The site directory's files, and reading one YAML file into data.

A file that is missing, unreadable, not UTF-8 or not YAML becomes one problem for that file
(with the line and column of a syntax error), never an exception: the caller
decides whether checking the fields would only add noise. Stricter than YAML
itself: a key given twice in one mapping is an error (YAML keeps the last one,
so a second `cameras:` block silently replaced the first), and so is nesting
deeper than any site needs (PyYAML composes recursively, and thousands of
levels ended in a RecursionError traceback).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from pi_stream.site.fields import Problems
from pi_stream.textfile import read_utf8

SITE_FILE = "site.yml"
INVENTORY_FILE = "inventory.yml"
# A site is about 5 levels deep. PyYAML's composer recurses (about 3 frames a level): at some 450 levels it ran out of stack.
MAX_NESTING = 100
MERGE_TAG = "tag:yaml.org,2002:merge"
NESTING_PROBLEM = f"nested more than {MAX_NESTING} levels deep, which no site needs: is this the file you meant?"


class SiteLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping and data nested deeper than MAX_NESTING."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.open_levels = 0  # the collections being composed around the current node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        # Counted before descending: refused long before the composer's own recursion runs out of stack.
        self.open_levels += 1
        try:
            if self.open_levels > MAX_NESTING:
                raise yaml.composer.ComposerError(None, None, NESTING_PROBLEM, event.start_mark)
            node = super().compose_node(parent, index)
        finally:
            self.open_levels -= 1
        if isinstance(event, yaml.AliasEvent):
            if not hasattr(node, "levels"):
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{event.anchor} is inside the collection it names, which would then contain itself: "
                    "write the values out instead", event.start_mark,
                )
        else:
            node.levels = 1 + max((child.levels for child in child_nodes(node)), default=0)
        # An alias brings the node it names at its full depth: a chain of them nests without indenting.
        if self.open_levels + node.levels > MAX_NESTING:
            raise yaml.composer.ComposerError(None, None, NESTING_PROBLEM, event.start_mark)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue  # `<<: *defaults` then a key of its own overrides a merged one, as YAML means it to
            key = self.construct_object(key_node, deep=deep)
            try:
                first = first_lines.get(key)
            except TypeError:
                continue  # an unhashable key: the constructor's own error says so
            if first is None:
                first_lines[key] = key_node.start_mark.line + 1
            else:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first}): YAML would keep only this one; "
                    "merge the two into one, or remove one", key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def child_nodes(node: yaml.Node) -> list[yaml.Node]:
    """A sequence's items, a mapping's keys and values; a scalar has none."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def readable_secrets_note(path: Path, secret_fields: tuple[str, ...]) -> str:
    """A warning when site.yml holds passwords and users other than its owner may read it, else "".

    A warning, not an error like viewers.htpasswd's: a site.yml written before `pi-stream init` wrote it
    0600, or checked out of git (which keeps no modes), must still deploy; the note says what to run.
    """
    if not secret_fields:
        return ""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return ""
    if not mode & 0o077:
        return ""
    return (f"{path} holds passwords ({', '.join(secret_fields)}) and its permissions are {mode:04o}, so other users "
            f"of this computer can read them: run `chmod 600 {path}`")


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
        return yaml.load(text, Loader=SiteLoader)  # a SafeLoader: builds plain data only
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
