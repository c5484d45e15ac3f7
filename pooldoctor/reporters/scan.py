"""Rendering a scan: text, JSON, SARIF 2.1.0 and GitHub workflow annotations.

Each renderer is a pure function of the result; identical results give identical bytes. Every
format lists the files the scan skipped, with the reason: text in a section of its own, JSON as
``skipped``, SARIF as the run's tool execution notifications (SARIF's place for what a tool could
not analyse), GitHub as annotations on the file (a notice, or a warning when source meant to be
scanned was not).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence

from pooldoctor import __version__
from pooldoctor.reporters import github
from pooldoctor.scan.checks import Check
from pooldoctor.scan.model import ScanResult, SkippedFile

SARIF_LEVELS = {"info": "note", "warning": "warning", "error": "error"}


class ScanFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"


def render(result: ScanResult, fmt: ScanFormat, checks: Sequence[Check]) -> str:
    if fmt is ScanFormat.JSON:
        return as_json(result)
    if fmt is ScanFormat.SARIF:
        return as_sarif(result, checks)
    if fmt is ScanFormat.GITHUB:
        return as_github(result)
    return as_text(result)


def as_text(result: ScanResult) -> str:
    lines = []
    for f in result.findings:
        lines.append(f"{f.file}:{f.line}:{f.column}: {f.code} {f.severity.value}: {f.message}")
        lines.append(f"    fix: {f.fix}")
    if result.skipped:
        count = len(result.skipped)
        lines.append(f"skipped {count} file{'' if count == 1 else 's'}:")
        lines += [f"  {s.path}: {_why(s)}" for s in result.skipped]
    count = len(result.findings)
    noun = "finding" if count == 1 else "findings"
    lines.append(f"{count} {noun} in {result.files_scanned} files")
    return "\n".join(lines) + "\n"


def as_json(result: ScanResult) -> str:
    data = {
        "schema": 1,
        "command": "scan",
        "findings": [
            {
                "code": f.code,
                "severity": f.severity.value,
                "file": f.file,
                "line": f.line,
                "column": f.column,
                "message": f.message,
                "fix": f.fix,
            }
            for f in result.findings
        ],
        "files_scanned": result.files_scanned,
        "skipped": [
            {"path": s.path, "reason": s.reason.value, "detail": s.detail} for s in result.skipped
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def as_sarif(result: ScanResult, checks: Sequence[Check]) -> str:
    rules = [
        {
            "id": c.code,
            "name": c.name,
            "shortDescription": {"text": c.summary},
            "fullDescription": {"text": " ".join(c.doc.split())},
            "help": {"text": c.fix},
            "defaultConfiguration": {"level": SARIF_LEVELS[c.severity.value]},
        }
        for c in checks
    ]
    results = [
        {
            "ruleId": f.code,
            "level": SARIF_LEVELS[f.severity.value],
            "message": {"text": f"{f.message} Fix: {f.fix}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }
            ],
        }
        for f in result.findings
    ]
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pooldoctor",
                        "version": __version__,
                        "informationUri": "https://pypi.org/project/pooldoctor/",
                        "rules": rules,
                    }
                },
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": [_notification(s) for s in result.skipped],
                    }
                ],
            }
        ],
    }
    return json.dumps(sarif, indent=2, sort_keys=True) + "\n"


def as_github(result: ScanResult) -> str:
    """``::error file=...,line=...,col=...,title=PD303::message`` lines for GitHub Actions."""
    lines = [
        github.annotation(
            github.LEVELS[f.severity],
            f"{f.message} Fix: {f.fix}",
            title=f.code,
            file=f.file,
            line=f.line,
            col=f.column,
        )
        for f in result.findings
    ]
    lines += [
        github.annotation(
            github.LEVELS[s.reason.severity],
            f"Not scanned: {_why(s)}",
            title=f"pooldoctor skipped this file ({s.reason.value})",
            file=s.path,
        )
        for s in result.skipped
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def _why(skipped: SkippedFile) -> str:
    return f"{skipped.reason.label}: {skipped.detail}"


def _notification(skipped: SkippedFile) -> dict[str, object]:
    """A SARIF ``notification``: the file it is about, and the reason as its descriptor."""
    return {
        "level": SARIF_LEVELS[skipped.reason.severity.value],
        "message": {"text": f"Not scanned: {_why(skipped)}"},
        "descriptor": {"id": skipped.reason.value},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": skipped.path, "uriBaseId": "%SRCROOT%"}
                }
            }
        ],
    }
