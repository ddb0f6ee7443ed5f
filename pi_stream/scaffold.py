"""`pi-stream init`: a commented site.yml and an inventory for one host."""

from __future__ import annotations

import json
from pathlib import Path

from pi_stream.credentials import write_private_file
from pi_stream.errors import PiStreamError
from pi_stream.site import INVENTORY_FILE, SITE_FILE

SCAFFOLD_DIR = Path(__file__).resolve().parent / "scaffold"


def init_site(directory: Path, address: str = "raspberrypi.local", user: str = "root", force: bool = False) -> list[Path]:
    directory = Path(directory)
    targets = [directory / SITE_FILE, directory / INVENTORY_FILE]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise PiStreamError(f"{', '.join(existing)} already exist(s); edit them, or pass --force to start over")
    directory.mkdir(parents=True, exist_ok=True)
    name = directory.resolve().name or "site"
    site_text = (SCAFFOLD_DIR / SITE_FILE).read_text(encoding="utf-8").replace("__NAME__", json.dumps(name))
    inventory_text = (
        (SCAFFOLD_DIR / INVENTORY_FILE).read_text(encoding="utf-8").replace("__ADDRESS__", address).replace("__USER__", user)
    )
    # 0600: site.yml is where NVR and camera passwords go (load_site warns when they are readable by others).
    write_private_file(targets[0], site_text)
    targets[1].write_text(inventory_text, encoding="utf-8")
    return targets
