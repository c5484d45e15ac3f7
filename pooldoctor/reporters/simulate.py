"""Rendering a simulation: text, JSON (check's schema family plus workers and celery), JUnit,
GitHub workflow annotations (``reporters/github.py``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from pooldoctor import __version__
from pooldoctor.commands.simulate import SimulateReport
from pooldoctor.core.model import to_dict
from pooldoctor.core.verdict.fleet import RANK, FleetResult, WorkerResult
from pooldoctor.reporters import github
from pooldoctor.reporters.sites import site_lines

WORKER_FIELDS = ("pid", "tasks", "failed_tasks", "crossed_replies", "inherited_connections",
                 "connections_opened", "lost_slots", "held_connections", "verdict")  # fmt: skip


def render(report: SimulateReport, fmt: str, fail_on: str = "leak") -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "junit":
        return as_junit(report, fail_on)
    if fmt == "github":
        return github.render_simulation(report, fail_on)
    return as_text(report)


def _worker(subject: str, worker: WorkerResult) -> dict[str, Any]:
    return {"subject": subject, **{f: getattr(worker, f) for f in WORKER_FIELDS},
            "summary": worker.summary,
            "leak_sites": [to_dict(site) for site in worker.leak_sites]}  # fmt: skip


def as_dict(report: SimulateReport) -> dict[str, Any]:
    return {
        "schema": 1,
        "command": "simulate",
        "pooldoctor": __version__,
        "verdict": report.verdict,
        "headline": report.headline,
        "environment": dict(report.environment),
        "database": to_dict(report.database),
        "celery": dict(report.celery),
        "results": [
            {
                "subject": r.subject,
                "kind": r.kind,
                "verdict": r.verdict,
                "summary": r.summary,
                "tasks": r.tasks_sent,
                "failed_tasks": r.failed_tasks,
                "tasks_lost": r.tasks_lost,
                "crossed_replies": r.crossed_replies,
                "shared_backends": {str(k): list(v) for k, v in r.shared_backends.items()},
                "connections_per_task": r.connections_per_task,
                "lost_slots": sum(w.lost_slots for w in r.workers),
                "held_connections": sum(w.held_connections for w in r.workers),
                "children_died": [dict(c) for c in r.children_died],
                "errors": dict(r.errors),
                "stop_detail": r.stop_detail,
                "workers": [_worker(r.subject, w) for w in r.workers],
                "evidence": {str(w.pid): [to_dict(c) for c in w.census] for w in r.workers},
                "seconds": r.seconds,
            }
            for r in report.results
        ],
        "workers": [_worker(r.subject, w) for r in report.results for w in r.workers],
        "findings": [to_dict(f) for f in report.findings],
        "fix": {"subject": report.fix_subject, "code": report.fix} if report.fix else None,
        "seconds": report.seconds,
    }


def as_json(report: SimulateReport) -> str:
    return json.dumps(as_dict(report), indent=2, sort_keys=True) + "\n"


def as_text(report: SimulateReport) -> str:
    c = report.celery
    lines = [
        f"pooldoctor simulate — {report.database.dsn} (alias {report.database.alias})",
        f"Celery {c['version']}, --pool {c['pool']} -c {c['concurrency']}, Django fix-up "
        f"{'on' if c['django_fixup'] else 'off'}, parent warmed before fork: "
        f"{'yes' if c['warm_parent'] else 'no'}, broker {c['broker']}",
    ]
    if c["signal_handlers"]:
        lines.append("signal handlers: " + "; ".join(c["signal_handlers"]))
    lines.append("")
    header = (
        f"{'Subject':40} {'Verdict':8} {'Tasks':>5} {'Failed':>6} {'Crossed':>7} {'Conn/task':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in report.results:
        lines.append(f"{r.subject[:40]:40} {r.verdict:8} {r.tasks_sent:>5} {r.failed_tasks:>6} "
                     f"{r.crossed_replies:>7} {r.connections_per_task:>9g}")  # fmt: skip
    for r in report.results:
        if r.verdict == "clean":
            continue
        lines += ["", f"{r.subject} ({r.kind}): {r.verdict}", f"  {r.summary}"]
        for w in r.workers:
            lines.append(
                f"  worker pid {w.pid}: {w.verdict}, {w.tasks} tasks ({w.failed_tasks} failed), "
                f"{w.crossed_replies} crossed, {w.inherited_connections} inherited in use, "
                f"{w.connections_opened} opened, {w.lost_slots} lost, {w.held_connections} held"
            )
            lines += [f"    {line}" for site in w.leak_sites for line in site_lines(site)]
        if r.stop_detail:
            lines.append(f"  stopped: {r.stop_detail}")
    if report.findings:
        lines += ["", "Findings"]
        for f in report.findings:
            lines += [f"{f.code} {f.severity.value}: {f.message}", f"  fix: {f.fix}"]
    lines += ["", report.headline]
    if report.fix:
        lines += ["", f"Fix that measured clean here ({report.fix_subject}):", report.fix.rstrip()]
    return "\n".join(lines) + "\n"


def as_junit(report: SimulateReport, fail_on: str) -> str:
    suite = ET.Element("testsuite", name="pooldoctor.simulate", tests=str(len(report.results)))
    failures = 0
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"pooldoctor.simulate.{r.kind}",
                             name=r.subject, time=f"{r.seconds:.3f}")  # fmt: skip
        evidence = "\n".join(
            line
            for w in r.workers
            for line in [f"worker {w.pid}: {w.verdict}: {w.summary}"]
            + [f"  {site_line}" for site in w.leak_sites for site_line in site_lines(site)]
        )
        if r.kind == "wrapper" and fails(r, fail_on):
            failures += 1
            ET.SubElement(case, "failure", message=r.summary, type=r.verdict).text = evidence
        else:
            ET.SubElement(case, "system-out").text = f"{r.verdict}: {r.summary}\n{evidence}"
    suite.set("failures", str(failures))
    root = ET.Element("testsuites")
    root.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def fails(result: FleetResult, fail_on: str) -> bool:
    """Whether a fleet's verdict reaches ``--fail-on`` (unsafe and error always do)."""
    if fail_on == "never":
        return False
    threshold = RANK["leak"] if fail_on == "leak" else RANK["pinned"]
    return result.verdict in ("error", "unsafe") or RANK[result.verdict] >= threshold
