"""The JSON report: stable and versioned, for CI pipelines and for re-rendering later.

Keys are sorted and the layout is fixed, so identical input gives byte-identical output and a diff
between two runs shows only what changed; the only fields that vary between otherwise identical
runs are timings (``seconds`` and ``held_seconds``). Bump ``SCHEMA`` when a key changes meaning or
disappears; adding keys does not need a bump. Every field of the report is here, so
:mod:`pooldoctor.commands.report` loads it back and ``pooldoctor report`` renders any format
from it.
"""

from __future__ import annotations

import json
from typing import Any

from pooldoctor import __version__
from pooldoctor.core.model import DatabaseInfo, Finding, Report, SubjectResult, to_dict

SCHEMA = 1


def render(report: Report) -> str:
    """The report as indented JSON with sorted keys and a trailing newline."""
    return json.dumps(as_dict(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def as_dict(report: Report) -> dict[str, Any]:
    """The JSON document as plain Python values (what :func:`render` serialises)."""
    return {
        "schema": SCHEMA,
        "command": "check",
        "pooldoctor": __version__,
        "verdict": report.verdict.value,
        "headline": report.headline,
        "environment": {str(k): str(v) for k, v in report.environment.items()},
        "database": _database(report.database),
        "results": [_result(r) for r in report.results],
        "findings": [_finding(f) for f in report.findings],
        "fix": {"subject": report.fix_subject, "code": report.fix}
        if report.fix is not None
        else None,
        "seconds": report.seconds,
    }


def _database(db: DatabaseInfo) -> dict[str, Any]:
    return {
        "alias": db.alias,
        "vendor": db.vendor,
        "dsn": db.dsn,
        "pool": to_dict(db.pool) if db.pool is not None else None,
        "conn_max_age": db.conn_max_age,
        "server_version": db.server_version,
        "max_connections": db.max_connections,
        "source": db.source,
        "health_checks": db.health_checks,
        "reserved_connections": db.reserved_connections,
    }


def _result(result: SubjectResult) -> dict[str, Any]:
    run = result.run
    return {
        "subject": result.subject,
        "kind": run.kind,
        "description": run.description,
        "verdict": result.verdict.value,
        "summary": result.summary,
        "tasks": result.tasks,
        "tasks_planned": run.tasks_planned,
        "failed_tasks": result.failed_tasks,
        "lost_slots": result.lost_slots,
        "lost_per_task": result.lost_per_task,
        "held_connections": result.held_connections,
        "tasks_until_exhaustion": result.tasks_until_exhaustion,
        "stop": run.stop.value,
        "stop_detail": run.stop_detail,
        "symptoms": list(result.symptoms),
        "leak_sites": [to_dict(site) for site in run.leak_sites],
        "checkouts": run.checkouts,
        "returns": run.returns,
        "evidence": {
            "pooled": run.pooled,
            "celery_task": run.celery_task,
            "census": [to_dict(c) for c in run.census],
        },
        "seconds": run.seconds,
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "message": finding.message,
        "fix": finding.fix,
        "subject": finding.subject,
    }
