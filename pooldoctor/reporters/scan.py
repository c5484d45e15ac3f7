"""Rendering a scan: text, JSON, SARIF 2.1.0, GitHub workflow annotations, GitLab Code Quality
and JUnit XML.

Each renderer is a pure function of the result; identical results give identical bytes. Every
format lists the files the scan skipped, with the reason: text in a section of its own, JSON as
``skipped``, SARIF as the run's tool execution notifications (SARIF's place for what a tool could
not analyse), GitHub as annotations on the file (a notice, or a warning when source meant to be
scanned was not), GitLab as info/minor issues, JUnit as skipped testcases.

Columns are Unicode code points everywhere (SARIF declares it as ``columnKind``). SARIF's URIs
are relative references, percent-encoded, each against a ``uriBaseId`` that
``originalUriBaseIds`` maps to the scanned directory (when the result knows it: a report loaded
back from JSON does not, and keeps ``%SRCROOT%`` undeclared, which is where CI resolves it).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os.path
import posixpath
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePath, PurePosixPath
from urllib.parse import quote

from pooldoctor import __version__
from pooldoctor.core.model import Severity
from pooldoctor.reporters import github
from pooldoctor.reporters.junit import XML_DECLARATION
from pooldoctor.scan.checks import Check
from pooldoctor.scan.model import (
    SEVERITY_ORDER,
    ScanFinding,
    ScanResult,
    SettingsSummary,
    SkippedFile,
)

SARIF_LEVELS = {"info": "note", "warning": "warning", "error": "error"}
# GitLab Code Quality's severities: info, minor, major, critical, blocker.
GITLAB_SEVERITIES = {Severity.INFO: "info", Severity.WARNING: "major", Severity.ERROR: "critical"}
SRCROOT = "%SRCROOT%"


class ScanFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    GITLAB = "gitlab"
    """GitLab Code Quality (``artifacts: reports: codequality``)."""
    JUNIT = "junit"


# GitLab's own name for the report, and ours; checked before the plain suffixes.
_GITLAB_NAMES = ("gl-code-quality-report.json", ".gitlab.json", "codequality.json")
_SUFFIXES = {".json": ScanFormat.JSON, ".sarif": ScanFormat.SARIF, ".xml": ScanFormat.JUNIT}


def infer_format(output: str | None, given: str | None) -> ScanFormat:
    """``--format``, else what ``--output``'s name says (``.sarif``, ``.xml`` for JUnit,
    ``gl-code-quality-report.json`` or ``*.gitlab.json`` for GitLab, ``.json``), else text."""
    if given:
        return ScanFormat(given.lower())
    if output:
        name = PurePath(output).name.lower()
        if name.endswith(_GITLAB_NAMES):
            return ScanFormat.GITLAB
        return _SUFFIXES.get(PurePath(name).suffix, ScanFormat.TEXT)
    return ScanFormat.TEXT


def render(
    result: ScanResult, fmt: ScanFormat, checks: Sequence[Check], fail_on: str = "warning"
) -> str:
    if fmt is ScanFormat.JSON:
        return as_json(result)
    if fmt is ScanFormat.SARIF:
        return as_sarif(result, checks)
    if fmt is ScanFormat.GITHUB:
        return as_github(result)
    if fmt is ScanFormat.GITLAB:
        return as_gitlab(result)
    if fmt is ScanFormat.JUNIT:
        return as_junit(result, fail_on)
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
    lines += _settings_lines(result.settings)
    count = len(result.findings)
    noun = "finding" if count == 1 else "findings"
    lines.append(f"{count} {noun} in {result.files_scanned} files")
    return "\n".join(lines) + "\n"


def _settings_lines(settings: SettingsSummary) -> list[str]:
    """What the pool-dependent checks read, so that their silence can be trusted: ``pool
    unknown`` where scan could not tell, never ``no pool``."""
    if not settings.modules:
        return ["settings: none found (checks that need a pool assumed none)"]
    named = f"named in {', '.join(settings.named_in)}" if settings.named_in else "guessed"
    lines = [f"settings: {', '.join(settings.modules)} ({named})"]
    for db in settings.databases:
        where = f" at {db.where}" if db.where else ""
        because = f": {db.because}" if db.because else ""
        lines.append(f"  {db.settings} {db.alias}: pool {db.pool}{where}{because}")
    return lines


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
        "settings": dataclasses.asdict(result.settings),
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
    bases = _uri_bases(result)
    locate = _locator(result.root, bases)
    results = [
        {
            "ruleId": f.code,
            "level": SARIF_LEVELS[f.severity.value],
            "message": {"text": f"{f.message} Fix: {f.fix}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": locate(f.file),
                        "region": {"startLine": f.line, "startColumn": max(f.column, 1)},
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
                "columnKind": "unicodeCodePoints",
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": [
                            _notification(s, locate) for s in result.skipped
                        ],
                    }
                ],
            }
        ],
    }
    if bases:
        sarif["runs"][0]["originalUriBaseIds"] = {  # type: ignore[index]
            base_id: {"uri": _directory_uri(directory)} for base_id, directory in bases
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


def _at_or_above(severity: Severity, fail_on: str) -> bool:
    """Whether a finding of ``severity`` fails the scan (as :meth:`ScanResult.reaches`)."""
    return fail_on != "never" and SEVERITY_ORDER[severity] >= SEVERITY_ORDER[Severity(fail_on)]


def _why(skipped: SkippedFile) -> str:
    return f"{skipped.reason.label}: {skipped.detail}"


def _notification(
    skipped: SkippedFile, locate: Callable[[str], dict[str, str]]
) -> dict[str, object]:
    """A SARIF ``notification``: the file it is about, and the reason as its descriptor."""
    return {
        "level": SARIF_LEVELS[skipped.reason.severity.value],
        "message": {"text": f"Not scanned: {_why(skipped)}"},
        "descriptor": {"id": skipped.reason.value},
        "locations": [{"physicalLocation": {"artifactLocation": locate(skipped.path)}}],
    }


def _uri_bases(result: ScanResult) -> list[tuple[str, str]]:
    """(uriBaseId, absolute directory) for each place the scan's paths are relative to: the root
    when a scanned directory is inside it, and each scanned directory outside it (the outermost
    of nested ones). The first is ``%SRCROOT%``. None when the result does not know where it
    ran (a report loaded back from JSON)."""
    root = result.root
    if not result.scanned or not posixpath.isabs(_posix(root)):
        return []
    inside = [d for d in result.scanned if _relative_to(d, root) is not None]
    outside = [d for d in result.scanned if _relative_to(d, root) is None]
    outermost = sorted(
        d for d in outside if not any(o != d and _relative_to(d, o) is not None for o in outside)
    )
    directories = ([root] if inside else []) + outermost
    ids = [SRCROOT] + [f"SRCROOT{n}" for n in range(2, len(directories) + 1)]
    return list(zip(ids, directories, strict=True))


def _locator(root: str, bases: list[tuple[str, str]]) -> Callable[[str], dict[str, str]]:
    """A shown path (relative to the root, or as given outside it) as a SARIF
    ``artifactLocation``: a percent-encoded relative reference and the base it is relative to."""

    def locate(shown: str) -> dict[str, str]:
        if bases:
            where = os.path.normpath(os.path.join(root, shown))
            for base_id, directory in bases:
                relative = _relative_to(where, directory)
                if relative is not None:
                    return {"uri": quote(_posix(relative)), "uriBaseId": base_id}
        if posixpath.isabs(_posix(shown)):  # outside every known base: an absolute file URI
            return {"uri": PurePosixPath(_posix(shown)).as_uri()}
        return {"uri": quote(_posix(shown)), "uriBaseId": SRCROOT}

    return locate


def _directory_uri(directory: str) -> str:
    """``file:///srv/my%20app/``: SARIF wants a base's URI to end with a slash."""
    uri = PurePosixPath(_posix(directory)).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _relative_to(path: str, directory: str) -> str | None:
    if path == directory:
        return ""
    prefix = directory.rstrip("/\\") + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else None


def _posix(path: str) -> str:
    return path.replace(os.sep, "/")


def as_gitlab(result: ScanResult) -> str:
    """GitLab Code Quality: a JSON array of issues. The fingerprint hashes the check, the file
    and the message (and the occurrence among identical ones), not the line, so an issue keeps
    its identity when code above it moves."""
    seen: Counter[str] = Counter()
    issues = []
    for f in result.findings:
        issues.append(
            _gitlab_issue(f"{f.message} Fix: {f.fix}", f.code, f.severity, f.file, f.line, seen)
        )
    for s in result.skipped:
        severity = "minor" if s.reason.severity is Severity.WARNING else "info"
        check = f"pooldoctor-skipped-{s.reason.value}"
        issue = _gitlab_issue(f"Not scanned: {_why(s)}", check, None, s.path, 1, seen)
        issues.append({**issue, "severity": severity})
    return json.dumps(issues, indent=2, sort_keys=True) + "\n"


def _gitlab_issue(
    description: str,
    check: str,
    severity: Severity | None,
    path: str,
    line: int,
    seen: Counter[str],
) -> dict[str, object]:
    key = "\0".join((check, path, description))
    seen[key] += 1
    fingerprint = hashlib.sha256(f"{key}\0{seen[key]}".encode()).hexdigest()
    return {
        "type": "issue",
        "description": description,
        "check_name": check,
        "categories": ["Bug Risk"],
        "fingerprint": fingerprint,
        "severity": GITLAB_SEVERITIES[severity] if severity else "info",
        "location": {"path": path, "lines": {"begin": line}},
    }


def as_junit(result: ScanResult, fail_on: str = "warning") -> str:
    """JUnit XML: one testcase per check and file with findings, failed when one of them is at
    or above ``fail_on`` (the exit code's rule), and a first testcase, ``scan``, that fails
    exactly when the exit code does; skipped files are skipped testcases."""
    groups: dict[tuple[str, str], list[ScanFinding]] = {}
    for f in result.findings:
        groups.setdefault((f.code, f.file), []).append(f)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="pooldoctor scan")
    ET.SubElement(
        ET.SubElement(suite, "properties"),
        "property",
        name="files_scanned",
        value=str(result.files_scanned),
    )
    failures = 0
    gate = ET.SubElement(suite, "testcase", classname="pooldoctor.scan", name="scan")
    count = len(result.findings)
    summary = f"{count} finding{'' if count == 1 else 's'} in {result.files_scanned} files"
    if result.reaches(fail_on):
        ET.SubElement(gate, "failure", message=f"{summary} (--fail-on {fail_on})").text = summary
        failures += 1
    else:
        ET.SubElement(gate, "system-out").text = summary
    for (code, file), found in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        case = ET.SubElement(suite, "testcase", classname=f"pooldoctor.scan.{code}", name=file)
        worst = max((f.severity for f in found), key=SEVERITY_ORDER.__getitem__)
        text = "\n".join(
            f"{f.file}:{f.line}:{f.column}: {f.code} {f.severity.value}: {f.message}\n"
            f"    fix: {f.fix}"
            for f in found
        )
        if _at_or_above(worst, fail_on):
            message = f"{code} {worst.value}: {found[0].message}"
            ET.SubElement(case, "failure", message=message, type=worst.value).text = text
            failures += 1
        else:
            ET.SubElement(case, "system-out").text = text
    for s in result.skipped:
        case = ET.SubElement(suite, "testcase", classname="pooldoctor.scan.skipped", name=s.path)
        ET.SubElement(case, "skipped", message=f"Not scanned: {_why(s)}")
    tests = 1 + len(groups) + len(result.skipped)
    for element in (suites, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
    suite.set("skipped", str(len(result.skipped)))
    ET.indent(suites)
    return XML_DECLARATION + ET.tostring(suites, encoding="unicode") + "\n"
