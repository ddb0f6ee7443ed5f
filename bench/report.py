"""What every benchmark does with its figures: name the machine, print them, keep them as JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def publish(figures: dict, json_path: Path | None) -> None:
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}", **figures}
    text = json.dumps(report, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
