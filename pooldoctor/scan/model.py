"""What a scan produces: findings with a place in the source, how many files were read, and which
files were left out and why."""

from __future__ import annotations

import dataclasses
import enum

from pooldoctor.core.model import Severity

SEVERITY_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclasses.dataclass(frozen=True, order=True)
class ScanFinding:
    file: str
    """Relative to the scanned root, with forward slashes."""
    line: int
    column: int
    code: str
    severity: Severity
    message: str
    fix: str


class SkipReason(enum.StrEnum):
    """Why a file that looked like source was not scanned."""

    UNPARSEABLE = "unparseable"
    """Python that does not parse (a SyntaxError): no check can read it."""
    UNDECODABLE = "undecodable"
    """Not UTF-8, and (for Python) no PEP 263 coding declaration says what it is."""
    TOO_LARGE = "too-large"
    """Larger than ``max-file-size``: generated code, not worth a parse that costs 30 times its
    size in memory."""
    NOT_REGULAR = "not-regular"
    """Not a regular file: a dangling symlink, a symlink loop, a symlink out of the scanned tree,
    a FIFO, a socket or a device. Never opened."""
    UNREADABLE = "unreadable"
    """Opening or reading it failed (permission denied, an I/O error, removed mid-scan)."""

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def severity(self) -> Severity:
        """A warning where source meant to be scanned could not be (its findings are missing);
        info where the file was left out on purpose."""
        if self in (SkipReason.TOO_LARGE, SkipReason.NOT_REGULAR):
            return Severity.INFO
        return Severity.WARNING


_LABELS = {
    SkipReason.UNPARSEABLE: "does not parse",
    SkipReason.UNDECODABLE: "cannot be decoded",
    SkipReason.TOO_LARGE: "too large",
    SkipReason.NOT_REGULAR: "not a regular file",
    SkipReason.UNREADABLE: "unreadable",
}


@dataclasses.dataclass(frozen=True, order=True)
class SkippedFile:
    path: str
    """Where the file is (a symlink's own place, not its target), relative to the scanned root."""
    reason: SkipReason
    detail: str
    """What exactly: the SyntaxError and its line, the size and the limit, the symlink's target."""


@dataclasses.dataclass(frozen=True, order=True)
class DatabaseSummary:
    """One alias of the live settings, as scan evaluated it."""

    settings: str
    alias: str
    pool: str
    """``on``, ``off`` or ``unknown``."""
    where: str = ""
    """``file:line`` of the pool setting (else of the alias)."""
    because: str = ""
    """Why the pool is unknown."""


@dataclasses.dataclass(frozen=True)
class SettingsSummary:
    """Which settings the pool-dependent checks read: what a user needs to trust their
    silence."""

    modules: tuple[str, ...] = ()
    named_in: tuple[str, ...] = ()
    """Where ``DJANGO_SETTINGS_MODULE`` names them (``manage.py:9``); empty: guessed."""
    databases: tuple[DatabaseSummary, ...] = ()


@dataclasses.dataclass(frozen=True)
class ScanResult:
    root: str
    findings: tuple[ScanFinding, ...]
    files_scanned: int
    """Files read and checked (the skipped ones are not counted)."""
    skipped: tuple[SkippedFile, ...] = ()
    """Sorted by path. Reports saved before this field existed load with none."""
    scanned: tuple[str, ...] = ()
    """The directories scanned (a file given by name: its directory), absolute and normalised:
    SARIF's URIs are relative to them. Not in the JSON (absolute paths would differ between
    checkouts), so a saved report loads with none."""

    settings: SettingsSummary = dataclasses.field(default_factory=SettingsSummary)
    """Reports saved before this field existed load with an empty one."""

    def reaches(self, fail_on: str) -> bool:
        """Whether any finding is at or above ``fail_on`` (a severity, or ``never``). Skipped
        files inform and never gate."""
        if fail_on == "never":
            return False
        threshold = SEVERITY_ORDER[Severity(fail_on)]
        return any(SEVERITY_ORDER[f.severity] >= threshold for f in self.findings)
