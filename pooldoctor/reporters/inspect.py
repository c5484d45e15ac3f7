"""Rendering an inspection: text (rich, as ``check``'s console report), JSON (check's schema
family: ``"schema": 1, "command": "inspect"``, sorted keys, leak sites in check's shape), JUnit
(one testcase per worker process, one per node that could not be inspected) and GitHub workflow
annotations. Nothing is computed here."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from rich.table import Table
from rich.text import Text

from pooldoctor.core.model import InspectReport, NodeResult, ProcessResult, Verdict
from pooldoctor.core.verdict import fails as verdict_fails
from pooldoctor.reporters import console as screen
from pooldoctor.reporters import github
from pooldoctor.reporters.sites import site_lines

FORMATS = ("text", "json", "junit", "github")
# Two-line headers keep the numeric columns narrow enough for long node names in 100 columns.
COLUMNS = ("Node", "Process", "Verdict", "Tasks", "Lost", "Held", "Opened", "Inher-\nited", "Pool",
           "Server")  # fmt: skip


# -- text ------------------------------------------------------------------------------------


def table(report: InspectReport) -> Table:
    """One row per worker process, one per node that could not be inspected (also the live
    table of ``--watch``)."""
    longest = max((len(n.node) for n in report.nodes), default=4)
    grid = screen.new_table(COLUMNS, left=3, first_width=longest)
    for node in report.nodes:
        if not node.processes:
            grid.add_row(Text(node.node), Text(node.status.value),
                         screen.verdict_text(node.verdict), *[""] * 7)  # fmt: skip
        for p in node.processes:
            numbers = (p.tasks, p.lost_slots, p.held_connections, p.connections_opened,
                       p.adopted_connections)  # fmt: skip
            grid.add_row(
                Text(node.node), Text(f"{p.pid}{' (main)' if p.main else ''}"),
                screen.verdict_text(p.verdict), *map(str, numbers), _pool(p),
                str(len(p.server_sessions)),
            )  # fmt: skip
    return grid


def as_text(report: InspectReport, *, width: int | None = 100, color: bool = False) -> str:
    out = io.StringIO()
    console = screen.new_console(out, width=width, color=color)
    for line in header_lines(report):
        console.print(Text(line))
    console.print()
    console.print(table(report), soft_wrap=False)
    console.print()
    for node in report.nodes:
        if node.verdict is Verdict.CLEAN:
            continue
        style = screen.VERDICT_STYLES.get(node.verdict, "")
        console.print(Text(f"{node.node}: {node.verdict.value}", style=style))
        for line in node_lines(node):
            console.print(Text("  " + line))
        console.print()
    console.print(Text("Server", style="bold"))
    for line in server_lines(report):
        console.print(Text("  " + line))
    screen.print_closing(console, report)
    return out.getvalue()


def header_lines(report: InspectReport) -> list[str]:
    asked = ", ".join(report.destination) if report.destination else "every worker"
    return [
        f"pooldoctor inspect — broker {report.broker}, database {report.server.dsn}",
        f"asked {asked}, timeout {report.timeout:g} s, answered in {report.seconds:g} s",
    ]


def node_lines(node: NodeResult) -> list[str]:
    if not node.processes:
        return [f"{node.status.value}: {node.summary}"]
    lines = [
        f"worker pid {node.pid}, --pool {node.pool} -c {node.concurrency}, alias {node.alias}, "
        f"tracking {'on' if node.tracking else 'off'}"
    ]
    for p in node.processes:
        if p.verdict is Verdict.CLEAN:
            continue
        lines.extend(process_lines(p))
    return lines


def process_lines(p: ProcessResult) -> list[str]:
    lines = [
        f"pid {p.pid}{' (main)' if p.main else ''}: {p.verdict.value}: {p.summary}",
        f"  {p.tasks} tasks ({p.failed_tasks} failed), {p.checkouts} checkouts, {p.returns} "
        f"returned, {p.connections_opened} opened, {p.adopted_connections} inherited, pool "
        f"{_pool(p)}",
    ]
    for c in p.pinned:
        backend = f", backend {c.backend_pid}" if c.backend_pid is not None else ""
        lines.append(f"  held by {c.thread} ({c.thread_role}) for {c.held_seconds:g} s, "
                     f"{c.transaction}{backend}")  # fmt: skip
    for s in p.server_sessions:
        lines.append(f"  server: backend {s.pid} {s.state}, {s.application_name or '-'} from "
                     f"{s.client_addr or 'local socket'}, since {s.backend_start}")  # fmt: skip
    if p.gone_from_server:
        lines.append(f"  gone from the server: backends {', '.join(map(str, p.gone_from_server))}")
    lines += [f"  {line}" for site in p.leak_sites for line in site_lines(site)]
    return lines


def server_lines(report: InspectReport) -> list[str]:
    server = report.server
    if not server.available:
        return [f"unavailable: {server.detail}"]
    matched = sum(len(p.server_sessions) for p in report.processes)
    lines = [f"{server.sessions} sessions on {server.dsn}: {matched} matched to worker processes"]
    for g in server.unmatched:
        pids = ", ".join(map(str, g.pids[:8])) + (", ..." if len(g.pids) > 8 else "")
        lines.append(f"unmatched: {g.count} x {g.application_name or '(no application_name)'} "
                     f"from {g.client_addr or 'local socket'}, {g.state}: {pids}")  # fmt: skip
    return lines


def _pool(p: ProcessResult) -> str:
    if p.pool is None:
        return "-"
    return f"{p.pool.size}/{p.pool.max_size}"


# -- JUnit -----------------------------------------------------------------------------------


def as_junit(report: InspectReport, fail_on: str) -> str:
    suite = ET.Element("testsuite", name="pooldoctor.inspect")
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for node in report.nodes:
        cases: list[tuple[str, Verdict, str, list[str]]] = [
            (f"pid {p.pid}", p.verdict, p.summary, process_lines(p)) for p in node.processes
        ] or [(node.status.value, node.verdict, node.summary, node_lines(node))]
        for name, verdict, summary, evidence in cases:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=f"pooldoctor.inspect.{node.node}",
                                 name=name, time="0.000")  # fmt: skip
            if verdict is Verdict.ERROR and fail_on != "never":
                counts["errors"] += 1
                element = ET.SubElement(case, "error", message=summary, type=verdict.value)
            elif verdict is not Verdict.ERROR and verdict_fails(verdict, fail_on):
                counts["failures"] += 1
                element = ET.SubElement(case, "failure", message=summary, type=verdict.value)
            else:
                element = ET.SubElement(case, "system-out")
            element.text = "\n".join(evidence)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{report.seconds:.3f}")
    root = ET.Element("testsuites", tests=str(counts["tests"]), failures=str(counts["failures"]),
                      errors=str(counts["errors"]))  # fmt: skip
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- GitHub ----------------------------------------------------------------------------------


def as_github(report: InspectReport, fail_on: str) -> str:
    """The headline, one annotation per node that is not clean (at the leak site's line when the
    process names one), then the findings."""
    lines = [github.annotation("notice", report.headline,
                               title=f"pooldoctor inspect: {report.verdict.value}")]  # fmt: skip
    for node in report.nodes:
        if node.verdict is Verdict.CLEAN:
            continue
        level = "error" if verdict_fails(node.verdict, fail_on) else "warning"
        title = f"{node.node}: {node.verdict.value}"
        sites = [(p, s) for p in node.processes for s in p.leak_sites]
        if not sites:
            head = [f"{node.node}: {node.summary}"] if node.processes else []
            text = "\n".join([*head, *node_lines(node)])
            lines.append(github.annotation(level, text, title=title))
        for p, site in sites:
            where = github.annotated_line(site)
            file, line = where if where is not None else (None, None)
            text = "\n".join([f"{node.node} pid {p.pid}: {p.summary}", *site_lines(site)])
            lines.append(github.annotation(level, text, title=f"{title} (pid {p.pid})",
                                           file=file, line=line))  # fmt: skip
    lines.extend(github.finding_annotation(f) for f in report.findings)
    return "\n".join(lines) + "\n"
