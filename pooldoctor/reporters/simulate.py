"""A simulation in every format: text (rich, as check's), JSON (the model, as every report),
JUnit (a testcase per subject, the worker processes' evidence) and GitHub annotations (one per
subject with a bad verdict, one per leak site of a worker process); and, while it runs, a bar
per subject on the terminal. Nothing is computed here."""

from __future__ import annotations

import contextlib
import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pooldoctor.core.model import PROJECT_KINDS, FleetResult, ProcessResult, SimulateReport, Verdict
from pooldoctor.core.verdict import fails
from pooldoctor.reporters import console, github, junit
from pooldoctor.reporters.sites import site_lines

COLUMNS = ("Subject", "Verdict", "Tasks", "Failed", "Crossed", "Conn/task")
SERVER_COLUMNS = ("Subject", "Verdict", "Requests", "Failed", "Crossed", "Conn/request")


def worker_line(w: ProcessResult, unit: str = "tasks") -> str:
    return (
        f"worker pid {w.pid}: {w.verdict}, {w.tasks} {unit} ({w.failed_tasks} failed), "
        f"{w.crossed_replies} crossed, {w.inherited_connections} inherited in use, "
        f"{w.connections_opened} opened, {w.lost_slots} lost, {w.held_connections} held"
    )


def server_line(server: Mapping[str, Any]) -> str:
    """``simulate --server``: the server as it ran."""
    return (
        f"{server['name']} {server['version']} ({server['interface'].upper()}, "
        f"{server['concurrency']}), app {server['app']}, {server['requests']} requests per "
        f"subject, {server['concurrent_requests']} at a time"
    )


def runner_line(runner: Mapping[str, Any]) -> str:
    """How a task runner's workers ran: ``RQ 2.1.0, --pool fork -c 2, broker redis://...``."""
    warmed = ", parent warmed before fork" if runner.get("warm_parent") else ""
    return (
        f"{runner['title']} {runner['version']}, --runner {runner['name']} --pool "
        f"{runner['pool']} -c {runner['concurrency']}{warmed}, queue {runner['broker']}"
    )


def as_text(report: SimulateReport, *, width: int | None = 100, color: bool = False) -> str:
    """On a terminal (``width`` None) the subject column folds when it must; in a file the page
    is as wide as the table, so no subject is ever cut or broken across lines."""
    grid = table(report)
    if width is not None:
        width = max(width, console.new_console(io.StringIO(), width=10_000).measure(grid).maximum)
    out = io.StringIO()
    screen = console.new_console(out, width=width, color=color)
    c = report.celery
    screen.print(Text(f"pooldoctor simulate — {report.database.dsn} (alias "
                      f"{report.database.alias})", style="bold"))  # fmt: skip
    if report.server is not None:
        screen.print(Text(server_line(report.server)))
    elif report.runner is not None:
        screen.print(Text(runner_line(report.runner)))
        if report.runner.get("django_integration"):
            screen.print(Text(f"its Django integration: {report.runner['django_integration']}"))
    else:
        screen.print(Text(
            f"Celery {c['version']}, --pool {c['pool']} -c {c['concurrency']}, Django fix-up "
            f"{'on' if c['django_fixup'] else 'off'}, parent warmed before fork: "
            f"{'yes' if c['warm_parent'] else 'no'}, broker {c['broker']}"
        ))  # fmt: skip
        if c["signal_handlers"]:
            screen.print(Text("signal handlers: " + "; ".join(c["signal_handlers"])))
    screen.print()
    screen.print(grid, soft_wrap=False)
    unit = "requests" if report.server is not None else "tasks"
    for r in report.results:
        if r.verdict is Verdict.CLEAN:
            continue
        screen.print()
        screen.print(console.heading(r.subject, r.kind, r.verdict))
        screen.print(Text(f"  {r.summary}"))
        for w in r.workers:
            screen.print(Text(f"  {worker_line(w, unit)}"))
            for site in w.leak_sites:
                for line in site_lines(site):
                    screen.print(Text(f"    {line}"))
        if r.stop_detail:
            screen.print(Text(f"  stopped: {r.stop_detail}"))
    console.print_closing(screen, report)
    return out.getvalue()


def table(report: SimulateReport) -> Table:
    longest = max((len(r.subject) for r in report.results), default=len(COLUMNS[0]))
    columns = SERVER_COLUMNS if report.server is not None else COLUMNS
    grid = console.new_table(columns, left=2, first_width=min(longest, console.SUBJECT_MIN_WIDTH))
    for r in report.results:
        numbers = (r.tasks, r.failed_tasks, r.crossed_replies)
        grid.add_row(Text(r.subject), console.verdict_text(r.verdict), *map(str, numbers),
                     f"{r.connections_per_task:g}")  # fmt: skip
    return grid


def evidence(r: FleetResult) -> list[str]:
    """Each worker process's verdict, with its leak sites."""
    return [
        line
        for w in r.workers
        for line in [f"worker {w.pid}: {w.verdict}: {w.summary}"]
        + [f"  {site_line}" for site in w.leak_sites for site_line in site_lines(site)]
    ]


def as_junit(report: SimulateReport, fail_on: str) -> str:
    suite = ET.Element("testsuite", name="pooldoctor.simulate",
                       tests=str(len(report.results) + 1))  # fmt: skip
    failures = int(junit.project_case(suite, report, fail_on))
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"pooldoctor.simulate.{r.kind}",
                             name=r.subject, time=f"{r.seconds:.3f}")  # fmt: skip
        text = "\n".join(evidence(r))
        if r.kind in PROJECT_KINDS and fails(r.verdict, fail_on):
            failures += 1
            ET.SubElement(case, "failure", message=r.summary, type=r.verdict).text = text
        else:
            ET.SubElement(case, "system-out").text = f"{r.verdict}: {r.summary}\n{text}"
    suite.set("failures", str(failures))
    root = ET.Element("testsuites")
    root.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def as_github(report: SimulateReport, fail_on: str = "leak") -> str:
    """One annotation per project subject with a bad verdict (crossed replies and inherited
    pools have no site), one per leak site of its worker processes, the findings, then the
    built-in modes."""
    github.check_fail_on(fail_on)
    title = f"pooldoctor simulate: {report.verdict}"
    lines = [
        github.annotation(github.headline_level(report, fail_on), report.headline, title=title)
    ]
    own = [r for r in report.results if r.kind in PROJECT_KINDS]
    modes = [r for r in report.results if r.kind not in PROJECT_KINDS]
    for result in own:
        if result.verdict in (Verdict.CLEAN, Verdict.SKIPPED):
            continue
        level = "error" if fails(result.verdict, fail_on) else "warning"
        head = _lines(result)
        lines.append(github.annotation(level, "\n".join(head),
                                       title=f"{result.subject}: {result.verdict}"))  # fmt: skip
        for worker in result.workers:
            for site in worker.leak_sites:
                subject = f"{result.subject} (worker pid {worker.pid})"
                lines.append(github.site_annotation(subject, head[:1], site, fail_on))
    lines.extend(github.finding_annotation(f) for f in report.findings)
    lines.extend(
        github.mode_annotation(r.subject, r.verdict, _lines(r))
        for r in modes
        if r.verdict not in (Verdict.CLEAN, Verdict.SKIPPED)
    )
    return "\n".join(lines) + "\n"


def _lines(result: FleetResult) -> list[str]:
    lines = [f"{result.subject} ({result.kind}): {result.verdict}: {result.summary}"]
    lines.extend(f"worker {w.pid}: {w.verdict}: {w.summary}" for w in result.workers)
    if result.stop_detail:
        lines.append(f"stopped: {result.stop_detail}")
    return lines


@contextlib.contextmanager
def live_progress(screen: Console, unit: str = "task") -> Iterator[Callable[[str, int, int], None]]:
    """A bar per subject on ``screen`` while it runs (``mysite.tasks.refresh: task 3/12``), gone
    when the run ends. The callback is called from the run's threads."""
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=20),
               TextColumn("{task.fields[count]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=screen, transient=True) as bars:
        tasks: dict[str, TaskID] = {}
        lock = threading.Lock()

        def advance(subject: str, done: int, total: int) -> None:
            with lock:
                if subject not in tasks:
                    tasks[subject] = bars.add_task(subject, total=total, count="")
                bars.update(tasks[subject], completed=done, total=total,
                            count=f"{unit} {done}/{total}", refresh=True)  # fmt: skip

        yield advance
