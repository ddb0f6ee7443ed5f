"""The one map from failure to exit code.

Every expected failure is a PiStreamError carrying its ExitStatus; cli.main()
catches it once, prints one line per problem and exits with the status.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitStatus(IntEnum):
    """Exit codes of the pi-stream command (documented in the README)."""

    OK = 0
    ERROR = 1  # anything else that went wrong, said in one line
    USAGE = 2  # click's own: bad options or arguments
    INVALID_SITE = 3  # site.yml, inventory or credentials do not validate
    DEPLOY_FAILED = 4  # ansible-playbook failed on at least one host
    VERIFY_FAILED = 5  # the appliance runs but a check failed
    UNREACHABLE = 6  # a host did not answer on SSH before anything ran
    LAB_FAILED = 7  # the simulated Pis could not be brought up or down
    INTERRUPTED = 130  # 128 + SIGINT


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
