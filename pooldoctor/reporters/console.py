"""The human report: what was measured, which subjects leak, the evidence, and a fix.

Rendered with rich to a string so the CLI decides where it goes and tests can compare it. Every
user-supplied string goes through :class:`rich.text.Text` with markup and emoji off: a DSN or an
exception message containing ``[...]`` or ``:name:`` must print as it is.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from rich import box
from rich.console import Console, OverflowMethod
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pooldoctor.core.model import (
    DatabaseInfo,
    Fix,
    InspectReport,
    Report,
    SimulateReport,
    SubjectResult,
    TaskCensus,
    ThreadConnection,
    Verdict,
)
from pooldoctor.reporters.sites import site_lines

VERDICT_STYLES: Mapping[Verdict, str] = {
    Verdict.LEAK: "bold red",
    Verdict.PINNED: "yellow",
    Verdict.CLEAN: "green",
    Verdict.ERROR: "magenta",
    Verdict.SKIPPED: "dim",
    Verdict.UNSAFE: "bold red",
}

# Environment keys shown first, in this order, with the spelling users know; others follow sorted.
ENVIRONMENT_LABELS: tuple[tuple[str, str], ...] = (
    ("django", "Django"),
    ("psycopg", "psycopg"),
    ("psycopg_pool", "psycopg_pool"),
    ("asgiref", "asgiref"),
    ("celery", "celery"),
    ("python", "python"),
)

NO_VALUE = "—"


# Wide enough for every built-in mode's name and a typical MODULE:ATTR wrapper.
SUBJECT_MIN_WIDTH = 36
TABLE_COLUMNS = (
    "Subject",
    "Kind",
    "Verdict",
    "Tasks",
    # Two-line headers keep the numeric columns narrow enough for 100 columns.
    "Failed",
    "Lost\nslots",
    "Lost\nper task",
    "Held",
    "Exhausted\nafter",
)


def new_console(out: io.StringIO, *, width: int | None = 100, color: bool = False) -> Console:
    """The console every text report prints to: ANSI colours only when ``color`` is true, no
    markup or emoji read from the project's strings."""
    return Console(
        file=out,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        markup=False,
        emoji=False,
        # Lines stay whole (the terminal soft-wraps them) so evidence can be grepped and copied.
        soft_wrap=True,
    )


def new_table(headers: tuple[str, ...], *, left: int, first_width: int | None = None) -> Table:
    """A results table: the first ``left`` columns left-aligned, numbers right-aligned; the first
    column (a subject or node name) folds onto a second line on a narrow terminal, never "…"."""
    table = Table(
        box=box.SIMPLE_HEAD,
        header_style="bold",
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for index, header in enumerate(headers):
        overflow: OverflowMethod = "fold" if index == 0 else "ellipsis"
        table.add_column(
            header,
            justify="left" if index < left else "right",
            overflow=overflow,
            min_width=first_width if index == 0 else None,
        )
    return table


def verdict_text(verdict: Verdict) -> Text:
    return Text(verdict.value, style=VERDICT_STYLES.get(verdict, ""))


def heading(name: str, kind: str, verdict: Verdict) -> Text:
    """``name (kind): verdict``, the verdict in its colour."""
    text = Text(f"{name} ({kind}): ", style="bold")
    text.append(verdict_text(verdict))
    return text


def print_closing(console: Console, report: Report | SimulateReport | InspectReport) -> None:
    """What every text report ends with: its findings, its headline, and the fix (as code),
    worded by what it measured (:func:`closing_fix_line`)."""
    console.print()
    if report.findings:
        console.print(Text("Findings", style="bold"))
        for finding in report.findings:
            console.print(Text(f"{finding.code} {finding.severity.value}: {finding.message}"))
            console.print(Text(f"  fix: {finding.fix}"))
        console.print()
    console.print(Text(report.headline, style="bold"))
    fix = getattr(report, "fix", None)
    if fix:
        console.print()
        console.print(Text(closing_fix_line(fix)))
        code = Syntax(fix.code.rstrip("\n"), "python", theme="ansi_dark", line_numbers=False)
        console.print(code, soft_wrap=False)


def closing_fix_line(fix: Fix) -> str:
    """What the closing fix is: proven only when it was applied to the project and that run
    measured clean; otherwise the pattern that measured clean elsewhere in the run."""
    if fix.proven:
        return f"Fix applied to {fix.applied_to} and measured clean here ({fix.subject}):"
    if fix.applied_to is not None and fix.measured is not None:
        return f"Fix applied to {fix.applied_to} ({fix.subject}), measured {fix.measured.value}:"
    named = f" as {fix.subject}" if fix.subject else ""
    return f"The pattern that measured clean here{named}, not run on your code:"


def subject_fix_lines(fix: Fix, closing: Fix | None) -> list[Text]:
    """A wrapper's own fix under its evidence: the patch and what it measured, or why there is
    none (the pattern, when it is not the closing fix, follows as code)."""
    name = fix.applied_to
    if fix.proven and fix.diff is None:  # a settings change, not a patch of the source
        head = f"Fix for {name}, measured clean here with this change ({fix.subject}):"
    elif fix.proven:
        head = (
            f"Fix for {name}, measured clean here with your wrapper patched "
            f"({fix.subject}; diff below):"
        )
    elif name is not None and fix.measured is not None:
        verdict = fix.measured.value
        still = f"still {verdict}" if fix.measured in (Verdict.LEAK, Verdict.PINNED) else verdict
        head = (
            f"Fix for {name} ({fix.subject}), patched and measured: {still} ({fix.detail}); "
            "the diff that was measured:"
        )
    else:
        where = "at the end" if closing is not None and closing.code == fix.code else "below"
        head = (
            f"Could not patch it ({fix.detail}): the pattern that measured clean as built-in "
            f"mode {fix.subject}, not run on your code, is {where}."
        )
    lines = [Text("  " + head)]
    if fix.diff:
        lines.extend(diff_line(line) for line in fix.diff.rstrip("\n").splitlines())
    elif closing is None or closing.code != fix.code:
        lines.extend(Text(line) for line in fix.code.rstrip("\n").splitlines())
    return lines


def diff_line(line: str) -> Text:
    """One line of a unified diff, unindented so it can be copied to ``git apply``."""
    if line.startswith(("+++", "---")):
        return Text(line, style="bold")
    style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
    return Text(line, style=style)


def render(report: Report, *, width: int | None = 100, color: bool = False) -> str:
    """The check report as terminal text."""
    out = io.StringIO()
    console = new_console(out, width=width, color=color)
    console.print(Text(title_line(report.database), style="bold"))
    environment = environment_line(report.environment)
    if environment:
        console.print(Text(environment, style="dim"))
    console.print()
    console.print(_results_table(report), soft_wrap=False)

    for result in report.results:
        if result.verdict in (Verdict.CLEAN, Verdict.SKIPPED):
            continue
        console.print()
        console.print(heading(result.subject, result.kind, result.verdict))
        console.print(Text("  " + result.summary))
        for line in evidence_lines(result):
            console.print(Text("  " + line))
        if result.fix is not None:
            for text in subject_fix_lines(result.fix, report.fix):
                console.print(text)
    print_closing(console, report)
    return out.getvalue()


def title_line(db: DatabaseInfo) -> str:
    """``pooldoctor check — <dsn> (alias <alias>, <pool>, CONN_MAX_AGE=<x>)``."""
    return (
        f"pooldoctor check {NO_VALUE} {db.dsn} "
        f"(alias {db.alias}, {pool_description(db)}, CONN_MAX_AGE={db.conn_max_age})"
    )


def pool_description(db: DatabaseInfo) -> str:
    """The configured pool as the user wrote it; unset options are psycopg_pool's defaults."""
    if db.pool is None:
        return "no pool"
    parts = ["pool:"]
    if "max_size" in db.pool:
        parts.append(f"max_size {db.pool['max_size']}")
    if "timeout" in db.pool:
        parts.append(f"timeout {_number(db.pool['timeout'])}s")
    if len(parts) == 1:
        parts.append("defaults")
    return " ".join(parts)


def environment_line(environment: Mapping[str, str]) -> str:
    """Versions of what decides connection handling, in a fixed order."""
    by_key = {k.lower(): (k, v) for k, v in environment.items()}
    parts: list[str] = []
    for key, label in ENVIRONMENT_LABELS:
        if key in by_key:
            parts.append(f"{label} {by_key.pop(key)[1]}")
    parts.extend(f"{k} {v}" for k, v in sorted(by_key.values()))
    return " · ".join(parts)


def evidence_lines(result: SubjectResult) -> list[str]:
    """Plain lines proving a verdict: how the run stopped, symptoms, and the last census.

    Shared with the JUnit reporter so a CI failure shows the same evidence as the terminal.
    """
    lines: list[str] = []
    if result.stop_detail:
        lines.append(f"stopped ({result.stop.value}): {result.stop_detail}")
    lines.extend(f"symptom: {symptom}" for symptom in result.symptoms)
    for site in result.leak_sites:
        lines.extend(site_lines(site))
    if result.census:
        last = result.census[-1]
        lines.append(f"after task {last.index + 1} of {result.tasks_planned}:")
        lines.extend(connection_line(c) for c in last.connections)
        lines.append(pool_line(last))
        if last.server is not None:
            lines.append(
                f"server: {last.server.backends} backends "
                f"({last.server.idle_in_transaction} idle in transaction)"
            )
    return lines


def connection_line(conn: ThreadConnection) -> str:
    """One Django connection object: whose it is and whether it still holds a slot."""
    pid = f"backend pid {conn.backend_pid}" if conn.backend_pid is not None else "no backend"
    return (
        f"thread {conn.thread} ({conn.thread_role}, {'alive' if conn.thread_alive else 'ended'})"
        f" {NO_VALUE} {'open' if conn.open else 'closed'}, "
        f"{'checked out' if conn.checked_out else 'returned'}, {conn.transaction}, "
        f"held {conn.held_seconds:.1f}s, {pid}"
    )


def pool_line(census: TaskCensus) -> str:
    if census.pool is None:
        return f"no pool: {census.lost} server connections lost"
    pool = census.pool
    return (
        f"pool: size {pool.size}, available {pool.available}, "
        f"checked out {pool.checked_out}, lost {census.lost}"
    )


def _results_table(report: Report) -> Table:
    rows: list[tuple[str, ...]] = []
    for result in report.results:
        exhausted = result.tasks_until_exhaustion
        rows.append(
            (
                result.subject,
                result.kind,
                result.verdict.value,
                str(result.tasks),
                str(result.failed_tasks),
                str(result.lost_slots),
                f"{result.lost_per_task:.2f}",
                str(result.held_connections),
                NO_VALUE if exhausted is None else str(exhausted),
            )
        )

    # Subject names stay whole up to a point; numbers are short and their headers wrap instead.
    longest = max((len(row[0]) for row in rows), default=len(TABLE_COLUMNS[0]))
    table = new_table(TABLE_COLUMNS, left=3, first_width=min(longest, SUBJECT_MIN_WIDTH))
    for result, row in zip(report.results, rows, strict=True):
        table.add_row(Text(row[0]), Text(row[1]), verdict_text(result.verdict), *row[3:])
    return table


def _number(value: object) -> str:
    """``5`` for 5.0, so whole-second timeouts read naturally."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
