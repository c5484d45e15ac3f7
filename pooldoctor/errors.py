"""Exit codes and the errors a user can act on.

Every error pooldoctor raises on purpose is a :class:`PooldoctorError`: it carries its exit code
and a one-line message that says what is wrong and how to fix it. The CLI prints that line; only
``--debug`` shows a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The documented exit codes of every pooldoctor command."""

    OK = 0
    """Nothing reached ``--fail-on``."""
    FAILED = 1
    """A subject of the project (a wrapper) reached ``--fail-on``."""
    USAGE = 2
    """The command line is wrong (unknown mode, malformed ``--wrapper``, bad option value)."""
    CANNOT_RUN = 3
    """The check could not run: settings, database, engine, wrapper or a missing extra."""
    INTERRUPTED = 130
    """Ctrl-C: every child process and temporary directory was removed first."""


class PooldoctorError(Exception):
    """An error with a message meant for the user."""

    exit_code: ExitCode = ExitCode.CANNOT_RUN

    def __init__(self, message: str, tip: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tip = tip

    def __str__(self) -> str:
        return f"{self.message} ({self.tip})" if self.tip else self.message


class UsageError(PooldoctorError):
    """The command line asks for something that does not exist or cannot be parsed."""

    exit_code = ExitCode.USAGE


class ProjectError(PooldoctorError):
    """The project's settings, alias, engine or wrapper cannot be used."""


class DatabaseError(PooldoctorError):
    """The database cannot be reached or refuses pooldoctor."""


class MissingExtraError(PooldoctorError):
    """An optional dependency that the requested feature needs is not installed."""
