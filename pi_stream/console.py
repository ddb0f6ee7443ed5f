"""Output to the user, injectable so tests capture it and progress can be turned off."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Console:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    show_progress: bool = True

    def info(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def progress(self, message: str) -> None:
        if self.show_progress:
            print(message, file=self.err, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=self.err, flush=True)

    def error(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            print(f"error: {line}", file=self.err, flush=True)


def table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    """A plain-text table: columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
