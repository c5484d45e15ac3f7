"""The data that flows through the pipeline: measurements in, verdicts out.

Everything here is a frozen dataclass built from plain values, so a subject process can send its
census to the parent as JSON, verdict rules can be tested with hand-built values, and reporters only
render. ``to_dict``/``from_dict`` are the wire format between processes and the core of the JSON
report.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


class Verdict(enum.StrEnum):
    """What a subject (or the whole project) does to the pool, worst last."""

    SKIPPED = "skipped"
    CLEAN = "clean"
    PINNED = "pinned"
    ERROR = "error"
    LEAK = "leak"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Verdict.SKIPPED: -1,
    Verdict.CLEAN: 0,
    Verdict.PINNED: 1,
    Verdict.ERROR: 2,
    Verdict.LEAK: 3,
}


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class StopReason(enum.StrEnum):
    """Why a subject process stopped running tasks."""

    DONE = "done"
    """Every task ran."""
    EXHAUSTED = "exhausted"
    """A task waited for a connection with every pool slot out: it could only time out."""
    HUNG = "hung"
    """A task did not finish within the per-task time limit."""
    CRASHED = "crashed"
    """The subject process died or could not set the subject up."""
    SKIPPED = "skipped"
    """The subject cannot run here (for example asgiref lacks the API it uses)."""


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """psycopg_pool's own accounting, read with ``get_stats()``."""

    min_size: int
    max_size: int
    size: int
    """Connections the pool counts: idle, handed out, or being opened."""
    available: int
    """Idle connections in the pool."""
    waiting: int
    """Clients waiting for a connection right now."""
    connections_opened: int
    """Connections the pool opened since it was created."""
    timeout: float

    @property
    def checked_out(self) -> int:
        """Slots the pool believes are in use by someone."""
        return self.size - self.available

    @property
    def free(self) -> int:
        """Slots a new request could get without waiting."""
        return self.available + (self.max_size - self.size)


@dataclasses.dataclass(frozen=True)
class ThreadConnection:
    """One Django connection object of the alias, seen after a task."""

    thread: str
    """The name of the thread that opened it (Django connections belong to one thread)."""
    thread_role: str
    """main thread, process-wide sync_to_async executor, context executor, ..."""
    thread_alive: bool
    open: bool
    checked_out: bool
    """Taken from the pool (or, without a pool, open) and not given back."""
    held: bool
    """Checked out by a thread that is alive and still references it."""
    transaction: str
    """libpq's view: idle, active, intrans, inerror or unknown."""
    autocommit: bool | None
    held_seconds: float
    backend_pid: int | None
    opened_in_pid: int | None = None
    """The process that opened it: another process's connection in use means a shared socket."""


@dataclasses.dataclass(frozen=True)
class ServerView:
    """The server's own view: pg_stat_activity rows with the subject's application_name."""

    backends: int
    idle_in_transaction: int
    pids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class TaskCensus:
    """What was measured after one task."""

    index: int
    kind: str
    """The probe task's behaviour: ok, raise-after-query, raise-in-atomic, open-transaction; or
    ``task`` for a run of the project's own task (``--task``)."""
    ok: bool
    error: str | None
    """``Type: message`` of the exception the task ended with, if any."""
    expected_error: bool
    """The task failed the way the probe meant it to (not with a symptom)."""
    seconds: float
    pool: PoolStats | None
    lost: int
    """Cumulative: connections given up while still checked out (pool slots, or open server
    connections without a pool) since the subject started."""
    held: int
    """Connections checked out between tasks by live threads."""
    connections: tuple[ThreadConnection, ...]
    server: ServerView | None
    sqlstate: str | None = None
    """The SQLSTATE of the database error the task ended with, if any (``25006``: a write in a
    read-only transaction), whatever language the server speaks."""


@dataclasses.dataclass(frozen=True)
class StackEntry:
    """One frame of a checkout's call stack, or a run of library frames folded into one."""

    file: str | None
    line: int | None
    function: str | None
    folded: tuple[str, ...] = ()
    """For a folded run: the packages its frames belong to (django, asgiref, asyncio, ...)."""
    frames: int = 1


class LeakKind(enum.StrEnum):
    LOST = "lost"
    """Checked out, then given up: the pool counts the slot as in use forever."""
    PINNED = "pinned"
    """Checked out and held between tasks by a thread that is still alive."""


@dataclasses.dataclass(frozen=True)
class LeakSite:
    """Where connections that were lost or pinned had been checked out, grouped and counted."""

    kind: LeakKind
    file: str | None
    """The innermost frame of the project's own code (not Django's, asgiref's or pooldoctor's),
    relative to the project directory; None when no project frame was on the stack."""
    line: int | None
    function: str | None
    thread: str
    """The kind of thread that checked the connections out."""
    count: int
    """Connections lost or pinned at this site."""
    reason: str
    """Why they never came back, with the timing that shows it."""
    tasks: tuple[str, ...] = ()
    """The tasks (or tests) that checked them out, the first few."""
    thread_names: tuple[str, ...] = ()
    stack: tuple[StackEntry, ...] = ()
    """The first such checkout's stack, innermost first, library frames folded."""


# The kinds of subject that are the project's own code: their verdicts are the project's verdict
# and decide the exit code (a built-in mode's verdict only describes the mode).
PROJECT_KINDS = frozenset({"wrapper", "task"})


@dataclasses.dataclass(frozen=True)
class SubjectRun:
    """Everything a subject process reported: the raw measurement, no judgement yet."""

    subject: str
    kind: str
    """``mode``, ``wrapper`` (the probe through the project's decorator) or ``task`` (the
    project's own task)."""
    description: str
    stop: StopReason
    stop_detail: str | None
    tasks_planned: int
    census: tuple[TaskCensus, ...]
    pooled: bool
    celery_task: bool = False
    seconds: float = 0.0
    leak_sites: tuple[LeakSite, ...] = ()
    checkouts: int = 0
    """Checkouts of the alias's connections recorded while the subject ran."""
    returns: int = 0
    """Of those, how many went back to the pool (or were closed, without a pool)."""


@dataclasses.dataclass(frozen=True)
class SubjectResult:
    """A subject's verdict with the numbers that justify it."""

    run: SubjectRun
    verdict: Verdict
    summary: str
    """One sentence: what happened, with the key numbers."""
    lost_slots: int
    lost_per_task: float
    held_connections: int
    tasks_until_exhaustion: int | None
    symptoms: tuple[str, ...]
    """Errors tasks met that the probe did not cause on purpose (pool timeouts, poisoned
    connections, ...), each with how many tasks met it."""

    @property
    def subject(self) -> str:
        return self.run.subject

    @property
    def tasks(self) -> int:
        return len(self.run.census)

    @property
    def failed_tasks(self) -> int:
        return sum(1 for c in self.run.census if not c.ok)


@dataclasses.dataclass(frozen=True)
class Finding:
    """A configuration or behaviour problem with a stable code and a fix."""

    code: str
    severity: Severity
    message: str
    fix: str
    subject: str | None = None


@dataclasses.dataclass(frozen=True)
class DatabaseInfo:
    alias: str
    vendor: str
    dsn: str
    """The connection target with any password masked."""
    pool: Mapping[str, Any] | None
    conn_max_age: int | None
    server_version: str
    max_connections: int
    source: str
    """settings, url or embedded."""
    health_checks: bool = False
    reserved_connections: int = 3


@dataclasses.dataclass(frozen=True)
class Report:
    """The whole outcome of ``pooldoctor check``: what every reporter renders."""

    verdict: Verdict
    headline: str
    environment: Mapping[str, str]
    database: DatabaseInfo
    results: tuple[SubjectResult, ...]
    findings: tuple[Finding, ...]
    fix: str | None
    """Code of a way to run async ORM code that measured clean here, if any did."""
    fix_subject: str | None
    seconds: float


def to_dict(value: Any) -> Any:
    """A JSON-ready copy of a dataclass tree (enums become their values)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_dict(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    return value


def task_census_from_dict(data: Mapping[str, Any]) -> TaskCensus:
    pool = data.get("pool")
    server = data.get("server")
    return TaskCensus(
        index=data["index"],
        kind=data["kind"],
        ok=data["ok"],
        error=data["error"],
        expected_error=data["expected_error"],
        seconds=data["seconds"],
        pool=PoolStats(**pool) if pool else None,
        lost=data["lost"],
        held=data["held"],
        connections=tuple(ThreadConnection(**c) for c in data["connections"]),
        sqlstate=data.get("sqlstate"),
        server=ServerView(
            backends=server["backends"],
            idle_in_transaction=server["idle_in_transaction"],
            pids=tuple(server["pids"]),
        )
        if server
        else None,
    )


def leak_site_from_dict(data: Mapping[str, Any]) -> LeakSite:
    return LeakSite(
        kind=LeakKind(data["kind"]),
        file=data["file"],
        line=data["line"],
        function=data["function"],
        thread=data["thread"],
        count=data["count"],
        reason=data["reason"],
        tasks=tuple(data.get("tasks", ())),
        thread_names=tuple(data.get("thread_names", ())),
        stack=tuple(
            StackEntry(**{**entry, "folded": tuple(entry.get("folded", ()))})
            for entry in data.get("stack", ())
        ),
    )


def finding_from_dict(data: Mapping[str, Any]) -> Finding:
    return Finding(
        code=data["code"],
        severity=Severity(data["severity"]),
        message=data["message"],
        fix=data["fix"],
        subject=data.get("subject"),
    )
