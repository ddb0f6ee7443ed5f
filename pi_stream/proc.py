"""The one subprocess helper: argv lists only, a timeout always, errors that quote the command.

A child never inherits our stdin. The file description behind it is shared with every
other child, and ssh sets O_NONBLOCK on it while it runs (and leaves it set when it is
killed); ansible-core then refuses to start ("Ansible requires blocking IO"). A fresh
/dev/null, or a pipe for `input`, is the child's own. The one exception is a child that
asks the user a question (`ansible-playbook --ask-become-pass`): `stream(terminal=True)`
hands it our stdin, made blocking first.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from pi_stream.errors import CommandError


def require_tools(*names: str) -> None:
    """Fail up front, in one line, when a program we are about to run is not installed."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise CommandError(f"required program(s) not found on PATH: {', '.join(missing)}")


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    text: bool = True,
    secret_input: bool = False,
) -> subprocess.CompletedProcess:
    """Run argv, capture stdout and stderr, raise CommandError on failure or timeout.

    `secret_input` keeps stdin out of error messages (it is never logged anyway;
    the flag documents at the call site that a secret passes through).
    """
    argv = [str(part) for part in argv]
    try:
        result = subprocess.run(
            argv,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"command timed out after {timeout:g}s: {shlex.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise CommandError(f"program not found: {argv[0]} (command: {shlex.join(argv)})") from exc
    if check and result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        detail = stderr.strip()[-2000:]
        raise CommandError(
            f"command failed with exit code {result.returncode}: {shlex.join(argv)}"
            + (f"\n{detail}" if detail else "")
        )
    return result


def stream(
    argv: Sequence[str], *, stderr, env: Mapping[str, str] | None = None, cwd: str | None = None, terminal: bool = False
) -> subprocess.Popen:
    """Start argv with its stdout as a text pipe to read line by line (ansible's event stream).

    stdin is the child's own /dev/null, unless `terminal`: then it is ours, for a question the child
    asks the user (a password), set blocking first in case an ssh left it non-blocking.
    """
    argv = [str(part) for part in argv]
    stdin = subprocess.DEVNULL
    if terminal:
        try:
            os.set_blocking(0, True)
            stdin = None
        except OSError:  # no stdin at all (fd 0 closed): the child's question gets end of file, as from /dev/null
            pass
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=dict(env) if env is not None else None, cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"program not found: {argv[0]} (command: {shlex.join(argv)})") from exc
