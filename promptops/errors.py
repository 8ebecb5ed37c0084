"""Exit codes, named once, and the one error hierarchy that carries them.

A stage raises a ``PromptopsError`` (or a subclass) when it cannot go on; the command line's one
handler (``promptops.cli``) prints ``"<program>: <message>"`` on stderr and exits with the error's
code, never with a traceback. README's "Exit codes" section is the user's view of ``ExitCode``.

This module imports nothing of promptops: every stage, the commit hooks' included, may raise these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # a finding, a failed gate or budget (with --strict: a warning too)
    REFUSED = 1  # promote refused: a failed gate or no evidence (the same code as a finding)
    USAGE = 2  # unusable input or environment: a broken config, a bad ref or option, a path that cannot be written
    SERVICE = 3  # a model service or GitHub failed after retries
    INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports a process stopped by SIGINT

    def __str__(self) -> str:  # "2", as an int prints, on every Python (3.10's IntEnum says "ExitCode.USAGE")
        return str(self.value)


class PromptopsError(Exception):
    """Why a command stops: a message for the user (naming the file, and line, where there is one) and the
    exit code. ``program`` is who says it on stderr ("promptops", or a command's own name)."""

    exit_code: ExitCode = ExitCode.USAGE
    program: str = "promptops"

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(PromptopsError):
    """The input or the environment cannot be used (exit 2)."""


class ServiceError(PromptopsError):
    """An outside service (a model, GitHub) failed after retries (exit 3)."""

    exit_code = ExitCode.SERVICE
