"""Run every selected check over every file and collect the findings, sorted and suppressed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from pooldoctor.errors import UsageError
from pooldoctor.scan.checks import Check, all_checks
from pooldoctor.scan.facts import gather
from pooldoctor.scan.model import ScanFinding, ScanResult
from pooldoctor.scan.source import discover


def select_checks(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[Check]:
    checks = all_checks()
    known = [c.code for c in checks]
    chosen, dropped = set(select), set(ignore)
    for code in chosen | dropped:
        if not any(k.startswith(code) for k in known):
            close = difflib.get_close_matches(code, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown check code {code!r}", f"{hint}see pooldoctor scan --list-checks"
            )
    # A prefix selects a family: --select PD3 is every PD3xx check.
    return [
        c
        for c in checks
        if (not chosen or any(c.code.startswith(s) for s in chosen))
        and not any(c.code.startswith(i) for i in dropped)
    ]


def run_scan(
    root: Path, paths: Sequence[Path], checks: Sequence[Check], exclude: Iterable[str] = ()
) -> ScanResult:
    files = list(discover(root, paths or [root], exclude))
    facts = gather(files)
    findings: list[ScanFinding] = []
    for source in files:
        for check in checks:
            for hit in check.run(source, facts):
                if source.suppressed(hit.line, check.code):
                    continue
                findings.append(
                    ScanFinding(
                        file=source.relative,
                        line=hit.line,
                        column=hit.column,
                        code=check.code,
                        severity=check.severity,
                        message=hit.message,
                        fix=check.fix,
                    )
                )
    return ScanResult(
        root=str(root), findings=tuple(sorted(set(findings))), files_scanned=len(files)
    )
