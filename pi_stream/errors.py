"""The one map from failure to exit code.

Every expected failure is a PiStreamError carrying its ExitStatus; cli.main()
catches it once, prints one line per problem and exits with the status.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitStatus(IntEnum):
    """Exit codes of the pi-stream command; MEANINGS says each in words (`pi-stream --help` prints them)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INVALID_SITE = 3
    DEPLOY_FAILED = 4
    VERIFY_FAILED = 5
    UNREACHABLE = 6
    LAB_FAILED = 7
    INTERRUPTED = 130  # 128 + SIGINT


# The one description of each exit code: `pi-stream --help` prints this table, the README quotes it.
MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "success",
    ExitStatus.ERROR: "any other failure, said in one line",
    ExitStatus.USAGE: "bad options or arguments; a question with no terminal to ask it on",
    ExitStatus.INVALID_SITE: "site.yml, inventory.yml or viewers.htpasswd is invalid (all listed)",
    ExitStatus.DEPLOY_FAILED: "ansible-playbook failed on at least one host",
    ExitStatus.VERIFY_FAILED: "verify: a check failed; status: something needs attention",
    ExitStatus.UNREACHABLE: "a host does not answer on SSH, or refuses the login",
    ExitStatus.LAB_FAILED: "the simulated Pis could not be brought up or down",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_codes_table() -> str:
    """The exit codes, one per line, for --help and the README."""
    return "\n".join(f"{int(status):>3}  {MEANINGS[status]}" for status in ExitStatus)


class PiStreamError(Exception):
    """An expected failure: a message for the user and the status to exit with."""

    status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class CommandError(PiStreamError):
    """A subprocess failed or timed out; the message quotes the command and its stderr."""


class UsageError(PiStreamError):
    """The command cannot go on as asked: says what to pass instead (a password with no terminal to ask on)."""

    status = ExitStatus.USAGE


class SiteError(PiStreamError):
    """The site does not validate. Carries every problem at once, sorted by file and field path.

    Each problem is (file, field path, message); the message says what would be valid.
    """

    status = ExitStatus.INVALID_SITE

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = sorted(problems)
        lines = [f"{file}: {path}: {msg}" if path else f"{file}: {msg}" for file, path, msg in self.problems]
        super().__init__("\n".join(lines))


class RenderError(PiStreamError):
    """A template failed to render; names the template and the missing value, never the context."""


class DeployError(PiStreamError):
    status = ExitStatus.DEPLOY_FAILED


class UnreachableError(PiStreamError):
    status = ExitStatus.UNREACHABLE


class VerifyError(PiStreamError):
    status = ExitStatus.VERIFY_FAILED


class LabError(PiStreamError):
    status = ExitStatus.LAB_FAILED
