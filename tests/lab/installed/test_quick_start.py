"""The README's quick start, followed to the letter: its commands, as written, run by a user in a terminal.

The lab stands in for the Pi, and nothing else is changed: `pipx install pi-stream` takes the wheel
built from this checkout (the index is told where it is, as a user's pip would be told by PyPI), the
user's home has an SSH key, and `raspberrypi.local` resolves to the lab Pi in a private mount
namespace (its own /etc/hosts, as mDNS does on a LAN). The commands run in a pseudo-terminal, so the
hidden password prompts and ssh's host key question are answered as a person answers them.
"""

from __future__ import annotations

import hashlib
import os
import pty
import re
import select
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT, __version__
from pi_stream.lab.rootfs import SUDO_USER
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.lab.conftest import ssh

PI_NAME = "raspberrypi.local"
PASSWORD = "a viewer's long passphrase"
SECTION = "## Quick start with a real Pi"
# What a person types at each question, and the longest each command may take.
ANSWERS = (
    (re.compile(r"\(yes/no(/\[fingerprint\])?\)\? ?$"), "yes"),
    (re.compile(r"([Pp]assword[^:\n]*|Repeat for confirmation): ?$"), PASSWORD),
)
COMMAND_TIMEOUT_SECONDS = {"pipx": 900, "deploy": 1200, "verify": 300}


def quick_start_commands(readme: Path = PROJECT_ROOT / "README.md") -> list[str]:
    """The shell lines of the first code block under the quick start heading, comments dropped."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    block = re.search(r"^```(?:sh|bash|console)?\n(.*?)^```", section, re.M | re.S)
    assert block, f"no code block under {SECTION!r} in README.md"
    lines = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


@dataclass
class Terminal:
    """One command in a pseudo-terminal of its own, its questions answered, everything it printed kept."""

    home: Path
    env: dict[str, str]
    hosts_file: Path

    def run(self, command: str) -> tuple[int, str]:
        timeout = next((t for word, t in COMMAND_TIMEOUT_SECONDS.items() if word in command.split()[:2]), 180)
        # A private mount namespace in which /etc/hosts names the lab Pi and the user's home is the test's
        # (ssh reads ~/.ssh from the password database, not $HOME); the command is run by bash, as typed.
        mounts = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /root && cd /root && exec bash --norc --noprofile -c "$2"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, str(self.hosts_file), str(self.home), command]
        pid, fd = pty.fork()
        if pid == 0:  # the child: a session leader with the terminal as its controlling tty
            try:
                os.execvpe(argv[0], argv, self.env)
            finally:
                os._exit(127)
        output, pending, deadline = [], "", time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 1.0)
                if not ready:
                    continue
                try:
                    chunk = os.read(fd, 4096).decode(errors="replace")
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not chunk:
                    break
                output.append(chunk)
                pending = (pending + chunk)[-300:]
                for question, answer in ANSWERS:
                    if question.search(pending):
                        os.write(fd, (answer + "\n").encode())
                        pending = ""
            else:
                os.kill(pid, 9)
                pytest.fail(f"{command!r} ran past {timeout} s:\n{''.join(output)[-3000:]}")
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), "".join(output).replace("\r\n", "\n")


@pytest.fixture(scope="module")
def terminal(installed_lab, dist, tmp_path_factory) -> Terminal:
    """A new user's machine: an empty home with an SSH key, pipx, and nothing of pi-stream."""
    home = tmp_path_factory.mktemp("user") / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(installed_lab.key_path, home / ".ssh" / "id_ed25519")
    os.chmod(home / ".ssh" / "id_ed25519", 0o600)
    (home / ".ssh" / "id_ed25519.pub").write_text(Path(f"{installed_lab.key_path}.pub").read_text())
    constraints = home.parent / "constraints.txt"
    constraints.write_text(f"pi-stream=={__version__}\n")  # this checkout's wheel, whatever an index may hold
    hosts_file = home.parent / "hosts"
    hosts_file.write_text(f"127.0.0.1 localhost\n{installed_lab.hosts[0].address} {PI_NAME}\n")
    # Inside the command's namespace this home is /root (Terminal.run).
    path = "/root/.local/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    env = {"HOME": "/root", "PATH": path, "TERM": "dumb", "LANG": "C.UTF-8", "USER": "root",
           "PIP_FIND_LINKS": str(dist), "PIP_CONSTRAINT": str(constraints)}
    return Terminal(home, env, hosts_file)


def test_the_readme_quick_start_works_to_the_letter(terminal, installed_lab):
    commands = quick_start_commands()
    assert [c.split()[:2] for c in commands] == [
        ["pipx", "install"], ["ssh-copy-id", f"{SUDO_USER}@{PI_NAME}"], ["pi-stream", "init"],
        ["pi-stream", "user"], ["pi-stream", "deploy"], ["pi-stream", "verify"],
    ], commands
    printed = {}
    for command in commands:
        code, output = terminal.run(command)
        assert code == 0, (command, output[-6000:])
        printed[command.split()[1]] = output
    # pipx's copy, not the checkout's, ran: its link (to a path inside the commands' namespace) is in ~/.local/bin.
    link = terminal.home / ".local" / "bin" / "pi-stream"
    assert link.is_symlink() and os.readlink(link).startswith("/root/.local/pipx/venvs/pi-stream/"), link
    for step in ("deploy", "verify"):
        assert f"https://{PI_NAME}/" in printed[step], (step, printed[step][-2000:])
    # Open the URL, as the README says next: the page answers with the login.
    code, page = terminal.run(f"curl -sk https://{PI_NAME}/")
    assert code == 0 and 'id="login"' in page, page[-1000:]


def test_what_render_writes_is_what_landed_on_the_pi(terminal, installed_lab):
    """`pi-stream render` from the pipx install, byte for byte against the files on the Pi."""
    site_dir = terminal.home / "my-cameras"
    code, output = terminal.run("pi-stream render my-cameras -o rendered")
    assert code == 0, output
    bundle = render_site(load_site(site_dir))["pi1"]
    rendered = terminal.home / "rendered" / "pi1"
    assert {str(p.relative_to(rendered)) for p in rendered.rglob("*") if p.is_file()} == set(bundle)
    listing = ssh(installed_lab, "pi1", "sha256sum " + " ".join(shlex.quote("/" + t) for t in bundle))
    assert listing.returncode == 0, listing.stderr
    on_pi = {path.lstrip("/"): digest for digest, path in (line.split(None, 1) for line in listing.stdout.splitlines())}
    assert on_pi == {t: hashlib.sha256((rendered / t).read_bytes()).hexdigest() for t in bundle}
