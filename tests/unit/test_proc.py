"""The subprocess helper gives every child a stdin of its own.

The CI run of 2026-12-03 lost 16 lab tests to "Ansible requires blocking IO on stdin":
ssh had left O_NONBLOCK on the worker's stdin, which all its children share. These tests
recreate that stdin (a pipe set non-blocking) in a child Python and start ansible from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

UNDER_NON_BLOCKING_STDIN = textwrap.dedent("""
    import os, subprocess, sys
    os.set_blocking(0, False)
    from pi_stream import proc
    how, playbook = sys.argv[1:]
    if how == "inherit":
        rc = subprocess.run([playbook, "--version"], capture_output=True, timeout=60).returncode
    elif how == "run":
        rc = proc.run([playbook, "--version"], timeout=60, check=False).returncode
    else:
        child = proc.stream([playbook, "--version"], stderr=subprocess.DEVNULL, terminal=how == "terminal")
        child.stdout.read()
        rc = child.wait(timeout=60)
    print(rc)
""")


def ansible_under_non_blocking_stdin(how: str) -> int:
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run([sys.executable, "-c", UNDER_NON_BLOCKING_STDIN, how, ANSIBLE_PLAYBOOK],
                                stdin=read_end, capture_output=True, text=True, timeout=120, check=True)
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
    return int(result.stdout.strip())


def test_ansible_refuses_an_inherited_non_blocking_stdin():
    """The hazard is real: without the helper's own stdin, ansible does not start."""
    assert ansible_under_non_blocking_stdin("inherit") != 0


def test_run_and_stream_start_ansible_under_a_non_blocking_stdin():
    assert ansible_under_non_blocking_stdin("run") == 0
    assert ansible_under_non_blocking_stdin("stream") == 0


def test_a_child_that_asks_the_user_gets_our_stdin_made_blocking():
    """deploy --ask-become-pass: ansible-playbook reads the sudo password from our terminal, which an ssh may have left non-blocking."""
    assert ansible_under_non_blocking_stdin("terminal") == 0


def test_the_terminal_is_handed_on_only_when_asked():
    script = "import os; print(os.path.samestat(os.fstat(0), os.stat(os.devnull)))"
    read_end, write_end = os.pipe()
    try:
        outputs = []
        for terminal in (False, True):
            runner = f"from pi_stream import proc; import subprocess, sys; c = proc.stream([sys.executable, '-c', {script!r}], " \
                     f"stderr=subprocess.DEVNULL, terminal={terminal}); print(c.stdout.read().strip()); c.wait()"
            outputs.append(subprocess.run([sys.executable, "-c", runner], stdin=read_end, capture_output=True, text=True,
                                          timeout=60, check=True).stdout.strip())
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
    assert outputs == ["True", "False"], "its own /dev/null by default; our stdin (here a pipe) when it asks the user"
