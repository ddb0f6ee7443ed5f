"""docs/troubleshooting.md quotes what pi-stream prints. The `error:` lines of its examples are made here by
running the commands that print them; the messages its headings quote must still be in the code (those of
ssh, sudo and apt are listed as theirs). The page cannot drift from the program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pi_stream import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "troubleshooting.md"
SOURCES = [*sorted((PROJECT_ROOT / "pi_stream").rglob("*.py")), *sorted((PROJECT_ROOT / "playbooks").rglob("*.yml"))]
# Printed by other programs, passed on as they are: ssh, sudo through Ansible, apt, the config tests.
THEIRS = {
    "Permission denied (publickey,password)", "Host key verification failed", "Missing sudo password",
    "Failed to fetch", "Temporary failure resolving", "nginx -t", "fail2ban-client -t", "Connection refused",
}


def heading_quotes(text: str) -> list[str]:
    """Code spans in headings, cut where the page writes a placeholder (... or N of M)."""
    spans = [m for heading in re.findall(r"^#{2,4} (.*)$", text, re.M) for m in re.findall(r"`([^`]+)`", heading)]
    parts = (p.strip(" :;,'\"") for span in spans for p in re.split(r"\.\.\.|\bN of M\b", span))
    return [p for p in parts if len(p) >= 8]


def test_the_messages_headings_quote_are_still_in_the_code():
    code = "\n".join(re.sub(r"\s+", " ", path.read_text(encoding="utf-8")) for path in SOURCES)
    quotes = heading_quotes(DOC.read_text(encoding="utf-8"))
    assert len(quotes) >= 12, quotes
    missing = [q for q in quotes if not any(part in THEIRS or part in code for part in q.split(" or "))]
    assert missing == []


def pi_stream(cwd: Path, *argv: str, stdin: str = "") -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pi_stream", *argv], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PI_STREAM_PASSWORD"},
    )
    return result.stderr.splitlines()


def test_the_error_lines_shown_are_what_the_commands_print(tmp_path):
    """A Pi that refuses SSH (a closed port on loopback stands in for raspberrypi.local:22), a site with no
    viewer, a bad width, a password asked with no terminal: each example on the page, as printed."""
    pi_stream(tmp_path, "init", "my-cameras", "--host", "127.0.0.1")
    printed = pi_stream(tmp_path, "deploy", "my-cameras")
    printed += pi_stream(tmp_path, "user", "add", "my-cameras", "alice")
    pi_stream(tmp_path, "user", "add", "my-cameras", "alice", "--password-stdin", stdin="a long enough passphrase\n")
    inventory = tmp_path / "my-cameras" / "inventory.yml"
    inventory.write_text(re.sub(r"#? *ansible_port: 22", "ansible_port: 1", inventory.read_text()))
    printed += pi_stream(tmp_path, "deploy", "my-cameras")
    site = tmp_path / "my-cameras" / "site.yml"
    site.write_text(site.read_text().replace("width: 640", "width: wide"))
    printed += pi_stream(tmp_path, "deploy", "my-cameras")
    printed = [line.replace("127.0.0.1:1", "raspberrypi.local:22") for line in printed]

    shown = re.findall(r"^error: .*$", DOC.read_text(encoding="utf-8"), re.M)
    assert len(shown) >= 5, shown
    for line in shown:
        pattern = ".*".join(re.escape(part) for part in line.split("..."))
        assert any(re.fullmatch(pattern, p) for p in printed), (line, printed)
