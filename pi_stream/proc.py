"""The one subprocess helper: argv lists only, a timeout always, errors that quote the command."""

from __future__ import annotations

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
