"""What a scan produces: findings with a place in the source, and how many files were read."""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class ScanResult:
    root: str
    findings: tuple[ScanFinding, ...]
    files_scanned: int

    def reaches(self, fail_on: str) -> bool:
        """Whether any finding is at or above ``fail_on`` (a severity, or ``never``)."""
        if fail_on == "never":
            return False
        threshold = SEVERITY_ORDER[Severity(fail_on)]
        return any(SEVERITY_ORDER[f.severity] >= threshold for f in self.findings)
