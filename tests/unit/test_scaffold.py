"""`pi-stream init`'s scaffold: what it writes is a valid site as written, and with its commented blocks uncommented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.scaffold import GITIGNORE, ensure_gitignore, init_site
from pi_stream.site import load_site


def uncomment(text: str, first_line: str) -> str:
    """What a user does in an editor: drop the "# " of a block's first line and of the lines indented under it."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == first_line)
    indent = first_line[: len(first_line) - len(first_line.lstrip())]
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent + "#   "):
        end += 1
    block = [indent + line[len(indent) + 2:] for line in lines[start:end]]
    return "".join([*lines[:start], *block, *lines[end:]])


@pytest.fixture
def site_dir(tmp_path) -> Path:
    directory = tmp_path / "my-cameras"
    init_site(directory, address="192.0.2.5")
    credentials.add_user(directory, "alice", "a long enough password")
    return directory


def test_the_webrtc_block_is_a_valid_section_once_uncommented(site_dir):
    site_yml = site_dir / "site.yml"
    site_yml.write_text(uncomment(site_yml.read_text(), "# webrtc:"))
    site = load_site(site_dir)
    assert site.webrtc is not None and site.webrtc.cameras == ("testcam",) and site.webrtc.relay_port == 3478


def test_the_relay_block_is_a_valid_section_once_uncommented_with_the_inventorys_relays(site_dir):
    site_yml, inventory = site_dir / "site.yml", site_dir / "inventory.yml"
    site_yml.write_text(uncomment(uncomment(site_yml.read_text(), "# topology: relay"), "# relay:"))
    inventory.write_text(uncomment(inventory.read_text(), "  # children:"))
    site = load_site(site_dir)
    assert [r.name for r in site.relays] == ["relay1", "relay2"]
    assert [r.url for r in site.remote.relays] == ["https://cams.example.org", "https://198.51.100.20"]


def commented_sections(text: str) -> list[str]:
    return re.findall(r"^(# [a-z_]+:)(?:\s|$)", text, re.M)


def test_every_other_commented_section_is_valid_uncommented_alone(site_dir):
    """Each top-level `# key:` block of the scaffold, uncommented by itself, is a site that loads."""
    credentials.add_user(site_dir, "bob", "bob's long password")  # the viewers: example names bob
    site_yml = site_dir / "site.yml"
    text = site_yml.read_text()
    # login: and viewers' emails: go together (identities need a way to sign in, and the other way round).
    sections = [s for s in commented_sections(text) if s not in ("# topology:", "# relay:", "# login:")]
    assert {"# webrtc:", "# nvrs:", "# storage:", "# dvr_proxy:", "# viewers:"} <= set(sections), sections
    for section in sections:
        site_yml.write_text(uncomment(text, next(line for line in text.splitlines() if line.startswith(section))))
        if section != "# viewers:":
            load_site(site_dir)
    (site_dir / "oidc-client-secret").write_text("s3cret\n")
    (site_dir / "oidc-client-secret").chmod(0o600)
    both = uncomment(uncomment(text, "# viewers:"), "# login:")
    site_yml.write_text(both)
    site = load_site(site_dir)
    assert site.identities == {"carol@example.org": "carol"} and site.login.oidc.name == "Google"


def test_init_writes_a_gitignore_that_keeps_secrets_and_working_files_out_of_git(site_dir):
    repo = site_dir.parent
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    for path in (".pi-stream/runs/20261208-000000-abc123/events.jsonl", ".pi-stream/secrets/pi1.yml", ".pi-stream/bundle/pi1/x",
                 "tls/privkey.pem", "tls/fullchain.pem", "site.key"):
        (site_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (site_dir / path).write_text("x\n")
    listed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert sorted(line[3:] for line in listed.splitlines()) == [
        f"{site_dir.name}/{GITIGNORE}", f"{site_dir.name}/inventory.yml", f"{site_dir.name}/site.yml"
    ], listed


def test_an_existing_gitignore_keeps_its_lines_and_gets_the_missing_patterns(tmp_path):
    (tmp_path / GITIGNORE).write_text("*.swp\nviewers.htpasswd")
    ensure_gitignore(tmp_path)
    lines = (tmp_path / GITIGNORE).read_text().splitlines()
    assert lines[:2] == ["*.swp", "viewers.htpasswd"]
    assert lines.count("viewers.htpasswd") == 1 and ".pi-stream/" in lines
    before = (tmp_path / GITIGNORE).read_text()
    ensure_gitignore(tmp_path)
    assert (tmp_path / GITIGNORE).read_text() == before, "a second init adds nothing"
