"""Findings with stable codes: the configuration audit and what the measurements showed.

Pure functions of the settings, the server's facts and the verdicts. Codes never change meaning;
new ones get new numbers. PD1xx are configuration, PD2xx are measured behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pooldoctor.core.model import (
    PROJECT_KINDS,
    Finding,
    FleetResult,
    ForkCheck,
    Severity,
    SubjectResult,
    SubjectRun,
    TaskCensus,
    Verdict,
)
from pooldoctor.core.verdict import completed, poisoned_since

# A pool timeout above this turns an exhausted pool into what looks like a hung worker.
LONG_POOL_TIMEOUT = 10.0
# Celery's default concurrency is the number of CPUs; four is a small worker host.
TYPICAL_PROCESSES = 4
PSYCOPG_POOL_DEFAULTS = {"min_size": 4, "max_size": None, "timeout": 30.0}
# A write in a read-only transaction: SQLSTATE 25006, and PostgreSQL's English words for it
# ("cannot execute INSERT in a read-only transaction") for censuses saved without the SQLSTATE.
READ_ONLY_SQLSTATE = "25006"
READ_ONLY_ERROR = "in a read-only transaction"


def pool_settings(pool_option: Any) -> dict[str, Any] | None:
    """OPTIONS["pool"] with psycopg_pool's defaults filled in (``True`` means all defaults)."""
    if not pool_option:
        return None
    given = {} if pool_option is True else dict(pool_option)
    merged = {**PSYCOPG_POOL_DEFAULTS, **given}
    if merged["max_size"] is None:
        merged["max_size"] = merged["min_size"]
    return merged


def audit_config(
    pool: Mapping[str, Any] | None,
    conn_max_age: int | None,
    health_checks: bool,
    max_connections: int,
    reserved_connections: int,
) -> list[Finding]:
    findings: list[Finding] = []
    if pool is None:
        if conn_max_age:
            findings.append(
                Finding(
                    "PD104",
                    Severity.INFO,
                    f"no pool, CONN_MAX_AGE={conn_max_age}: every thread that runs ORM code keeps "
                    "its own persistent connection, and a thread that ends leaves it open until "
                    "the garbage collector runs",
                    "run async ORM code on threads that live as long as the process, or close "
                    "the connection on the ORM thread when the task ends",
                )
            )
        return findings
    usable = max_connections - reserved_connections
    max_size = int(pool["max_size"])
    fits = usable // max_size if max_size else 0
    if fits < TYPICAL_PROCESSES:
        findings.append(
            Finding(
                "PD102",
                Severity.ERROR if fits < 1 else Severity.WARNING,
                f"pool max_size {max_size} per process: only {fits} process(es) fit in the "
                f"server's {usable} usable connections (max_connections {max_connections} - "
                f"{reserved_connections} reserved); every Celery worker process and web worker "
                "has its own pool",
                f"lower max_size so that processes x max_size stays under {usable}, or put "
                "PgBouncer in front of the server",
            )
        )
    timeout = float(pool["timeout"])
    if timeout > LONG_POOL_TIMEOUT:
        findings.append(
            Finding(
                "PD103",
                Severity.WARNING,
                f"pool timeout {timeout:g} s: when the pool is exhausted every task waits "
                f"{timeout:g} s before failing, which looks like a hang, not a leak",
                'set OPTIONS["pool"]["timeout"] to a few seconds (e.g. 5) so exhaustion fails fast',
            )
        )
    if not health_checks and "check" not in pool:
        findings.append(
            Finding(
                "PD105",
                Severity.INFO,
                "pool without CONN_HEALTH_CHECKS: Django passes check=None, so after a server "
                "restart or failover the pool hands out dead connections",
                'set "CONN_HEALTH_CHECKS": True (Django then checks each connection on checkout)',
            )
        )
    return findings


def measured(results: Sequence[SubjectResult], fix_subject: str | None) -> list[Finding]:
    """Findings for the project's wrappers and tasks and for what every subject's census
    showed."""
    findings: list[Finding] = []
    pattern = (
        f"use the pattern that measured clean here as built-in mode {fix_subject} (code below)"
        if fix_subject
        else "close the connection on the thread that ran the ORM calls, before it ends"
    )
    own = [r for r in results if r.kind in PROJECT_KINDS]
    for result in own:
        fix = pattern
        if result.fix is not None and result.fix.proven and result.fix.diff is None:
            fix = (f"{result.fix.code.splitlines()[0]}: with it, {result.subject} measured "
                   "clean in this run")  # fmt: skip
        elif result.fix is not None and result.fix.proven:
            fix = (f"apply the diff under its evidence ({result.fix.subject}): with it, the "
                   "wrapper measured clean in this run")  # fmt: skip
        if result.verdict is Verdict.LEAK:
            findings.append(
                Finding(
                    "PD201",
                    Severity.ERROR,
                    f"{result.subject}: {result.summary}{_where(result)}",
                    fix,
                    result.subject,
                )
            )
        elif result.verdict is Verdict.PINNED:
            findings.append(
                Finding(
                    "PD202",
                    Severity.WARNING,
                    f"{result.subject}: {result.summary}{_where(result)}",
                    fix,
                    result.subject,
                )
            )
        elif result.verdict is Verdict.ERROR:
            findings.append(
                Finding(
                    "PD205",
                    Severity.ERROR,
                    f"{result.subject}: {result.summary}",
                    "see the symptoms: the task failed on every run; run with --debug to see "
                    "its output"
                    if result.kind == "task"
                    else "make the wrapper return once the task's coroutine finishes; run with "
                    "--debug to see the subject's output",
                    result.subject,
                )
            )
    for result in results:
        since = poisoned_since(completed(result))
        if since is not None:
            findings.append(
                Finding(
                    "PD203",
                    Severity.WARNING if result.kind == "mode" else Severity.ERROR,
                    f"{result.subject}: a task that died mid-transaction (task {since + 1}) left "
                    "its connection idle in transaction on a thread that outlives tasks; every "
                    "later task on that thread runs inside the stale transaction",
                    "run close_old_connections() on the ORM thread after every task, failed "
                    "ones included: it closes a connection whose autocommit was left off",
                    result.subject,
                )
            )
    if not own:
        findings.append(
            Finding(
                "PD204",
                Severity.INFO,
                "no project wrapper was named, so only built-in modes were measured and the "
                "project's verdict says nothing about its own code",
                "name the decorator your tasks use: --wrapper mysite.celeryapp:async_task "
                "(or [tool.pooldoctor] wrappers = [...] in pyproject.toml), or run a task: "
                "--task mysite.tasks.refresh_prices",
            )
        )
    return findings


def shared_pool(fork: ForkCheck | None, settings: str, alias: str) -> list[Finding]:
    """PD207 when a prefork child of the project's Celery app kept the pool its parent had open
    at the fork (measured by :mod:`pooldoctor.hosts.celery.fork`): every child then shares the
    parent's connections, and replies cross between processes."""
    if fork is None or not fork.kept_pool:
        return []
    ran = ", ".join(fork.receivers) or "none"
    fixup = (
        f"Celery {fork.celery}'s Django fix-up did not discard it"
        if fork.django_fixup
        else f"the app has no Django fix-up (Celery {fork.celery})"
    )
    raised = f"; receivers that raised: {'; '.join(fork.errors)}" if fork.errors else ""
    command = (
        f"pooldoctor simulate --prefork --settings {settings} --alias {alias} --app {fork.app}"
    )
    return [
        Finding(
            "PD207",
            Severity.ERROR,
            f"a prefork child of {fork.app} kept the pool its parent opened ({fork.detail}): "
            f"worker_process_init receivers ran: [{ran}]; {fixup}{raised}; every "
            f"worker process shares the parent's connections for {alias!r}",
            "discard the inherited pool in a worker_process_init handler "
            f"(connections[{alias!r}].close_pool()), and see the crossed replies, then the fix "
            f"measured clean, with: {command}",
        )
    ]


def refused_writes(run: SubjectRun | SubjectResult | FleetResult) -> int:
    """Tasks that had a statement refused because the session is read-only (by the server, or by
    pooldoctor's guard before it reached the server), whether or not the task caught it."""
    return sum(
        1
        for c in _census(run)
        if c.refused or c.sqlstate == READ_ONLY_SQLSTATE or (c.error and READ_ONLY_ERROR in c.error)
    )


def _census(run: SubjectRun | SubjectResult | FleetResult) -> list[TaskCensus]:
    """Every task's census: the subject process's, or every worker process's (simulate)."""
    if isinstance(run, FleetResult):
        return [c for worker in run.workers for c in worker.census]
    return list(run.census)


def _first_refusal(result: SubjectResult | FleetResult) -> str:
    """The first refused statement in words: which task, what, on which alias, and where."""
    for census in _census(result):
        for refused in census.refused:
            where = (
                f" at {refused.file}:{refused.line} in {refused.function}()"
                if refused.file
                else " (no frame of the project's own code)"
            )
            by = "pooldoctor refused" if refused.by == "pooldoctor" else "the server refused"
            return (
                f"; first: task {census.index + 1} ran {refused.statement!r} on alias "
                f"{refused.alias!r}{where} ({by} it)"
            )
    return ""


def write_hint(kind: str, dsn: str) -> str:
    """What to do when a project subject writes and pooldoctor's session is read-only."""
    return (
        f"the {kind} writes; rerun with --database embedded "
        f"(or --allow-writes to let it write to {without_password(dsn)})"
    )


def writes_refused(results: Sequence[SubjectResult | FleetResult], dsn: str) -> list[Finding]:
    """PD206 for each wrapper or task whose tasks failed on the read-only session (only drawn
    when pooldoctor opened the sessions read-only)."""
    return [
        Finding(
            "PD206",
            Severity.ERROR,
            f"{result.subject}: the {result.kind} writes, and {refused_writes(result)} "
            f"of {result.tasks} tasks had a statement refused on pooldoctor's read-only "
            f"session{_first_refusal(result)}: nothing was written, and its connection "
            "handling was measured on refused runs only",
            "rerun with --database embedded (a throwaway server, migrated first), or with "
            f"--allow-writes to let it write to {without_password(dsn)}",
            result.subject,
        )
        for result in results
        if result.kind in PROJECT_KINDS and refused_writes(result)
    ]


def direct_connections(results: Sequence[SubjectResult | FleetResult]) -> list[Finding]:
    """PD208 for each project subject that opened connections of its own, outside Django: the
    server's read-only default is all that keeps them from writing (and none, where the code
    passed ``options`` of its own)."""
    found = []
    for result in results:
        opened = [d for c in _census(result) for d in c.direct]
        # Seen by the server: a connection opened through another libpq driver (psycopg2), or
        # by code imported before pooldoctor's hook, still carries the ``:direct`` tag.
        seen = max((c.server.direct for c in _census(result) if c.server), default=0)
        if result.kind not in PROJECT_KINDS or not (opened or seen):
            continue
        first = opened[0] if opened else None
        where = (
            f" at {first.file}:{first.line} in {first.function}()"
            if first and first.file
            else f" ({seen} open at once in pg_stat_activity)"
            if not first
            else " (no frame of the project's own code)"
        )
        writable = sum(1 for d in opened if d.read_only is False)
        state = (
            f"{writable} of them started read-write (the code passes its own options): "
            "pooldoctor could not have stopped a write there"
            if writable
            else "they started read-only through libpq's PGOPTIONS, and pooldoctor's statement "
            "guard does not see them"
        )
        found.append(
            Finding(
                "PD208",
                Severity.ERROR if writable else Severity.WARNING,
                f"{result.subject}: the {result.kind} opened {max(len(opened), seen)} "
                f"connections outside Django, first{where}; {state}",
                "run pooldoctor, and the project's checks, as a role that cannot write "
                "(GRANT SELECT only) on databases whose data matters",
                result.subject,
            )
        )
    return found


def without_password(dsn: str) -> str:
    """A report's DSN (password masked as ``:***``) with no password at all."""
    return dsn.replace(":***@", "@")


def _where(result: SubjectResult) -> str:
    """Where the connections were checked out, from the result's largest located leak site."""
    located = [site for site in result.leak_sites if site.file is not None]
    if not located:
        return ""
    site = max(located, key=lambda s: s.count)
    more = f" and {len(located) - 1} other sites" if len(located) > 1 else ""
    return f" (checked out at {site.file}:{site.line} in {site.function}(){more})"
