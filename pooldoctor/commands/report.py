"""Saved reports: the JSON that check, scan and simulate write, loaded back so that any format can
be rendered again without measuring anything (pyinstrument's ``--load-prev``).

:func:`load` reads a report written with ``--format json``. Its ``"command"`` key says which
command wrote it; a report written before that key existed is recognised by its shape. The JSON of
``check`` holds every field of its :class:`~pooldoctor.core.model.Report`, so the report loaded back
renders exactly as the original did, in every format. Anything else (a missing file, not JSON,
JSON from another tool, a newer schema) is a :class:`~pooldoctor.errors.UsageError` with a tip.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pooldoctor import __version__
from pooldoctor.core import verdict
from pooldoctor.core.live_model import InspectReport
from pooldoctor.core.model import (
    DatabaseInfo,
    Report,
    Severity,
    StopReason,
    SubjectResult,
    SubjectRun,
    Verdict,
    finding_from_dict,
    leak_site_from_dict,
    task_census_from_dict,
)
from pooldoctor.errors import UsageError
from pooldoctor.reporters import Format
from pooldoctor.reporters import render as render_check
from pooldoctor.reporters.json import SCHEMA
from pooldoctor.scan.model import ScanFinding, ScanResult

if TYPE_CHECKING:
    from pooldoctor.commands.simulate import SimulateReport
    from pooldoctor.core.verdict.fleet import FleetResult, WorkerResult

TIP = "pass a file written with --format json by pooldoctor check, scan or simulate"
FORMATS = {
    "check": ("text", "json", "junit", "github"),
    "scan": ("text", "json", "sarif", "github"),
    "simulate": ("text", "json", "junit", "github"),
    "inspect": ("text", "json", "junit", "github"),
}
"""The formats each command renders (what ``pooldoctor report --format`` accepts for it)."""
FAIL_ON = {
    "check": ("leak", "pinned", "never"),
    "scan": ("info", "warning", "error", "never"),
    "simulate": ("leak", "pinned", "never"),
    "inspect": ("leak", "pinned", "never"),
}
"""``--fail-on`` values per command."""
DEFAULT_FAIL_ON = {"check": "leak", "scan": "warning", "simulate": "leak", "inspect": "leak"}
SUFFIXES = {".json": "json", ".xml": "junit", ".sarif": "sarif"}


@dataclasses.dataclass(frozen=True)
class Saved:
    """A report read back, with the command that wrote it."""

    command: str
    """check, scan or simulate."""
    report: Report | ScanResult | SimulateReport | InspectReport
    source: str
    """Where it was read from, for messages."""

    def render(
        self, fmt: str, fail_on: str, *, width: int | None = 100, color: bool = False
    ) -> str:
        """The report as ``fmt``, exactly as the command that wrote it renders it."""
        if isinstance(self.report, Report):
            return render_check(self.report, Format(fmt), fail_on=fail_on, width=width, color=color)
        if isinstance(self.report, ScanResult):
            from pooldoctor.reporters.scan import ScanFormat
            from pooldoctor.reporters.scan import render as render_scan
            from pooldoctor.scan.checks import all_checks

            # The JSON does not name the checks that were selected: SARIF lists every rule.
            return render_scan(self.report, ScanFormat(fmt), all_checks())
        if isinstance(self.report, InspectReport):
            from pooldoctor.reporters.inspect import render as render_inspect

            return render_inspect(self.report, fmt, fail_on, width=width, color=color)
        from pooldoctor.reporters.simulate import render as render_simulation

        return render_simulation(self.report, fmt, fail_on)

    def fails(self, fail_on: str) -> bool:
        """Whether the command that wrote the report would exit 1 with this ``--fail-on``."""
        if isinstance(self.report, Report):
            return verdict.report_fails(self.report, fail_on)
        if isinstance(self.report, ScanResult):
            return self.report.reaches(fail_on)
        if isinstance(self.report, InspectReport):
            from pooldoctor.reporters.inspect import fails as inspect_fails

            return inspect_fails(self.report, fail_on)
        from pooldoctor.reporters.simulate import fails as fleet_fails

        return any(r.kind == "wrapper" and fleet_fails(r, fail_on) for r in self.report.results)

    @property
    def outcome(self) -> str:
        """The verdict, or for a scan how many findings."""
        if isinstance(self.report, ScanResult):
            count = len(self.report.findings)
            return f"{count} finding{'' if count == 1 else 's'}"
        return str(self.report.verdict)

    def options(self, fmt: str | None, output: str | None, fail_on: str | None) -> tuple[str, str]:
        """``--format`` (else from the output's suffix, else text) and ``--fail-on`` (else the
        command's default), checked against what the command that wrote the report supports."""
        formats, fail_ons = FORMATS[self.command], FAIL_ON[self.command]
        if fmt is None:
            suffix = SUFFIXES.get(PurePath(output).suffix.lower()) if output else None
            fmt = suffix if suffix in formats else "text"
        if fmt not in formats:
            raise UsageError(
                f"--format {fmt} is not available for {self.source}, a {self.command} report",
                f"use one of {', '.join(formats)}",
            )
        if fail_on is None:
            fail_on = DEFAULT_FAIL_ON[self.command]
        if fail_on not in fail_ons:
            raise UsageError(
                f"--fail-on {fail_on} does not apply to {self.source}, a {self.command} report",
                f"use one of {', '.join(fail_ons)}",
            )
        return fmt, fail_on


def load(path: str) -> Saved:
    """The report in ``path`` (``-``: standard input)."""
    if path == "-":
        return loads(sys.stdin.read(), "standard input")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no saved report at {path}: the file does not exist", TIP) from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a pooldoctor report: it is not UTF-8 text", TIP) from None
    except OSError as exc:
        raise UsageError(f"cannot read the saved report {path}: {exc.strerror}", TIP) from None
    return loads(text, path)


def loads(text: str, source: str) -> Saved:
    """The report in ``text``, read from ``source`` (named in errors)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not a pooldoctor report: not JSON "
            f"({exc.msg} at line {exc.lineno}, column {exc.colno})",
            TIP,
        ) from None
    command = _command(data)
    if command is None:
        raise UsageError(f"{source} is JSON but not a pooldoctor report", TIP)
    schema = data["schema"]
    if schema > SCHEMA:
        writer = data.get("pooldoctor")
        by = f" by pooldoctor {writer}" if isinstance(writer, str) else ""
        raise UsageError(
            f"{source} was written{by} with report schema {schema}; this pooldoctor "
            f"{__version__} reads schema {SCHEMA} and older",
            "upgrade pooldoctor to re-render it: pip install -U pooldoctor",
        )
    try:
        report = LOADERS[command](data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        missing = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(
            f"{source} is not a complete pooldoctor {command} report ({missing})", TIP
        ) from None
    return Saved(command=command, report=report, source=source)


def _command(data: Any) -> str | None:
    """Which command wrote ``data``: its ``command`` key, or its shape (reports written before
    that key existed); None for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("schema"), int):
        return None
    if "command" in data:
        command = data["command"]
        return command if command in LOADERS else None
    if "celery" in data and "results" in data:
        return "simulate"
    if "files_scanned" in data and "findings" in data:
        return "scan"
    if "database" in data and "results" in data:
        return "check"
    return None


def report_from_dict(data: Mapping[str, Any]) -> Report:
    """A check :class:`~pooldoctor.core.model.Report` from the JSON of ``reporters/json.py``."""
    fix = data["fix"]
    return Report(
        verdict=Verdict(data["verdict"]),
        headline=data["headline"],
        environment=dict(data["environment"]),
        database=database_from_dict(data["database"]),
        results=tuple(_subject_result(r) for r in data["results"]),
        findings=tuple(finding_from_dict(f) for f in data["findings"]),
        fix=fix["code"] if fix else None,
        fix_subject=fix["subject"] if fix else None,
        seconds=data["seconds"],
    )


def database_from_dict(data: Mapping[str, Any]) -> DatabaseInfo:
    pool = data["pool"]
    return DatabaseInfo(
        alias=data["alias"],
        vendor=data["vendor"],
        dsn=data["dsn"],
        pool=dict(pool) if pool is not None else None,
        conn_max_age=data["conn_max_age"],
        server_version=data["server_version"],
        max_connections=data["max_connections"],
        source=data["source"],
        health_checks=data.get("health_checks", False),
        reserved_connections=data.get("reserved_connections", 3),
    )


def _subject_result(data: Mapping[str, Any]) -> SubjectResult:
    evidence = data["evidence"]
    census = tuple(task_census_from_dict(c) for c in evidence["census"])
    run = SubjectRun(
        subject=data["subject"],
        kind=data["kind"],
        description=data.get("description", ""),
        stop=StopReason(data["stop"]),
        stop_detail=data["stop_detail"],
        # Reports written before these keys existed: what can be told from the rest.
        tasks_planned=data.get("tasks_planned", len(census)),
        census=census,
        pooled=evidence["pooled"],
        celery_task=evidence["celery_task"],
        seconds=data["seconds"],
        leak_sites=tuple(leak_site_from_dict(s) for s in data.get("leak_sites", ())),
        checkouts=data.get("checkouts", 0),
        returns=data.get("returns", 0),
    )
    return SubjectResult(
        run=run,
        verdict=Verdict(data["verdict"]),
        summary=data["summary"],
        lost_slots=data["lost_slots"],
        lost_per_task=data["lost_per_task"],
        held_connections=data["held_connections"],
        tasks_until_exhaustion=data["tasks_until_exhaustion"],
        symptoms=tuple(data["symptoms"]),
    )


def scan_from_dict(data: Mapping[str, Any]) -> ScanResult:
    """A :class:`~pooldoctor.scan.model.ScanResult` from ``scan --format json``."""
    findings = tuple(
        ScanFinding(
            file=f["file"],
            line=f["line"],
            column=f["column"],
            code=f["code"],
            severity=Severity(f["severity"]),
            message=f["message"],
            fix=f["fix"],
        )
        for f in data["findings"]
    )
    # The scanned root is not in the JSON (an absolute path would break byte-identical output),
    # and no format shows it: paths in findings are already relative to it.
    return ScanResult(root=".", findings=findings, files_scanned=data["files_scanned"])


def simulate_from_dict(data: Mapping[str, Any]) -> SimulateReport:
    """A simulation report from ``simulate --format json``."""
    from pooldoctor.commands.simulate import SimulateReport

    return SimulateReport(
        verdict=data["verdict"],
        headline=data["headline"],
        environment=dict(data["environment"]),
        database=database_from_dict(data["database"]),
        celery=dict(data["celery"]),
        results=tuple(_fleet_result(r) for r in data["results"]),
        findings=tuple(finding_from_dict(f) for f in data["findings"]),
        fix=data["fix"]["code"] if data["fix"] else None,
        fix_subject=data["fix"]["subject"] if data["fix"] else None,
        seconds=data["seconds"],
    )


def inspect_from_dict(data: Mapping[str, Any]) -> InspectReport:
    """An inspection report from ``inspect --format json``."""
    from pooldoctor.core.live_model import report_from_dict

    return report_from_dict(data)


def _fleet_result(data: Mapping[str, Any]) -> FleetResult:
    from pooldoctor.core.verdict.fleet import FleetResult

    evidence = data["evidence"]
    return FleetResult(
        subject=data["subject"],
        kind=data["kind"],
        verdict=data["verdict"],
        summary=data["summary"],
        workers=tuple(_worker(w, evidence.get(str(w["pid"]), ())) for w in data["workers"]),
        tasks_sent=data["tasks"],
        tasks_lost=data["tasks_lost"],
        failed_tasks=data["failed_tasks"],
        crossed_replies=data["crossed_replies"],
        shared_backends={int(k): tuple(v) for k, v in data["shared_backends"].items()},
        connections_per_task=data["connections_per_task"],
        children_died=tuple(dict(c) for c in data["children_died"]),
        stop_detail=data["stop_detail"],
        errors=dict(data["errors"]),
        seconds=data["seconds"],
    )


def _worker(data: Mapping[str, Any], census: Any) -> WorkerResult:
    from pooldoctor.core.verdict.fleet import WorkerResult

    return WorkerResult(
        pid=data["pid"],
        tasks=data["tasks"],
        failed_tasks=data["failed_tasks"],
        crossed_replies=data["crossed_replies"],
        inherited_connections=data["inherited_connections"],
        # Not in the JSON, and no format shows it: whether the worker inherited a pool shows in
        # its inherited connections in use and in finding PD401.
        inherited_pool=False,
        connections_opened=data["connections_opened"],
        lost_slots=data["lost_slots"],
        held_connections=data["held_connections"],
        verdict=data["verdict"],
        summary=data["summary"],
        census=tuple(task_census_from_dict(c) for c in census),
        leak_sites=tuple(leak_site_from_dict(s) for s in data.get("leak_sites", ())),
    )


LOADERS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "check": report_from_dict,
    "scan": scan_from_dict,
    "simulate": simulate_from_dict,
    "inspect": inspect_from_dict,
}
