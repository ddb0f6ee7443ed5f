"""docs/backup.md's archive, made and restored as the page says: modes kept, and the restored site renders
byte for byte what the original renders (a relay site: viewers, camera passwords, the hosts' public keys)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import yaml

from pi_stream import PROJECT_ROOT, credentials
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_public_keys

DOC = PROJECT_ROOT / "docs" / "backup.md"
BACKUP = "tar -czf my-cameras.tar.gz my-cameras && chmod 600 my-cameras.tar.gz"
RESTORE = "tar -xzf my-cameras.tar.gz"


def modes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): stat.S_IMODE(p.stat().st_mode) for p in sorted(directory.rglob("*"))}


def test_the_documented_archive_restores_a_site_that_renders_the_same(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    assert BACKUP in text and "tar -xzf -" in text, "docs/backup.md no longer gives the commands this test runs"
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    site_dir = home / "my-cameras"
    shutil.copytree(PROJECT_ROOT / "examples" / "relay", site_dir)
    credentials.add_user(site_dir, VIEWER, VIEWER_PASSWORD)
    inventory = yaml.safe_load((site_dir / "inventory.yml").read_text(encoding="utf-8"))["all"]
    write_public_keys(site_dir, [*inventory["hosts"], *inventory["children"]["pi_stream_relays"]["hosts"]])
    os.chmod(site_dir / "site.yml", 0o600)

    subprocess.run(["sh", "-c", BACKUP], cwd=home, check=True, timeout=60)
    assert stat.S_IMODE((home / "my-cameras.tar.gz").stat().st_mode) == 0o600
    shutil.move(home / "my-cameras.tar.gz", elsewhere)
    subprocess.run(["sh", "-c", RESTORE], cwd=elsewhere, check=True, timeout=60)

    restored = elsewhere / "my-cameras"
    assert modes(restored) == modes(site_dir)
    assert modes(restored)["site.yml"] == 0o600 and modes(restored)["viewers.htpasswd"] == 0o600
    original, again = render_site(load_site(site_dir)), render_site(load_site(restored))
    assert original.keys() == again.keys()
    for host in original:
        assert {t: f.content for t, f in original[host].items()} == {t: f.content for t, f in again[host].items()}, host
