"""`pi-stream init`: a commented site.yml, an inventory for one host, and a .gitignore for what must not be committed."""

from __future__ import annotations

import json
from pathlib import Path

from pi_stream.credentials import write_private_file
from pi_stream.errors import PiStreamError
from pi_stream.site import INVENTORY_FILE, SITE_FILE

SCAFFOLD_DIR = Path(__file__).resolve().parent / "scaffold"
GITIGNORE = ".gitignore"
# Raspberry Pi OS has no root login over SSH: the Imager's first user, with sudo (the playbook becomes root).
DEFAULT_SSH_USER = "pi"


def init_site(directory: Path, address: str = "raspberrypi.local", user: str = DEFAULT_SSH_USER, force: bool = False) -> list[Path]:
    """Write site.yml (0600) and inventory.yml, and make sure the directory's .gitignore lists what must not be committed.

    Returns the two files written; the .gitignore is `directory / GITIGNORE` (ensure_gitignore).
    """
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
    ensure_gitignore(directory)
    return targets


def ensure_gitignore(directory: Path) -> Path:
    """The site's .gitignore with every pattern of the scaffold's: written if absent, else the missing patterns appended."""
    path = Path(directory) / GITIGNORE
    scaffold = (SCAFFOLD_DIR / "gitignore").read_text(encoding="utf-8")
    if not path.exists():
        path.write_text(scaffold, encoding="utf-8")
        return path
    present = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    missing = [line for line in scaffold.splitlines() if line.strip() and not line.startswith("#") and line.strip() not in present]
    if missing:
        text = path.read_text(encoding="utf-8")
        with path.open("a", encoding="utf-8") as file:
            file.write(("" if text.endswith("\n") or not text else "\n") + "# Added by `pi-stream init`: never commit these.\n")
            file.write("".join(f"{line}\n" for line in missing))
    return path
