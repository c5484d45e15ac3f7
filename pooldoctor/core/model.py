"""The data that flows through the pipeline: measurements in, verdicts out.

Everything here is a frozen dataclass built from plain values, so a subject process can send its
census to the parent as JSON, verdict rules can be tested with hand-built values, and reporters only
render. :mod:`pooldoctor.core.serde` converts any of them to JSON and back, with no hand-written
mirror: the JSON report *is* the model.

One measured OS process, judged, is a :class:`ProcessResult` whoever ran it: check's subject
process, a simulated Celery worker process, a live worker process answering ``inspect``. The three
reports compose it the same way, subject (or node) → processes → tasks, on a common
:class:`Outcome` (verdict, headline, environment, findings, seconds):

- :class:`Report` (check): :class:`SubjectResult` per subject, each one process;
- :class:`SimulateReport`: :class:`FleetResult` per subject, one process per worker;
- :class:`InspectReport`: :class:`NodeResult` per live worker node, one process per worker process.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, ClassVar

# Every layer converts through the model: these two are re-exported from here.
from pooldoctor.core.serde import from_dict as from_dict
from pooldoctor.core.serde import to_dict as to_dict
from pooldoctor.core.serde import was


class Verdict(enum.StrEnum):
    """What a subject (or the whole project) does to the pool, worst last."""

    SKIPPED = "skipped"
    CLEAN = "clean"
    UNMEASURED = "unmeasured"
    """The project's verdict when nothing of the project's own was measured (``check`` with
    built-in modes only): never ``clean`` for what did not run (``--fail-on unmeasured``)."""
    PINNED = "pinned"
    ERROR = "error"
    LEAK = "leak"
    UNSAFE = "unsafe"
    """Replies crossed between processes, or a connection another process opened was used: silent
    cross-talk between worker processes (simulate), the worst there is."""

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Verdict.SKIPPED: -1,
    Verdict.CLEAN: 0,
    Verdict.UNMEASURED: 1,
    Verdict.PINNED: 2,
    Verdict.ERROR: 3,
    Verdict.LEAK: 4,
    Verdict.UNSAFE: 5,
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
    DISCONNECTED = "disconnected"
    """The server ended one of pooldoctor's connections mid-run (terminated, shut down or
    restarted): what was measured after that says nothing about the subject."""


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

    @property
    def exhausted(self) -> bool:
        """No slot left: the next checkout waits (and, past ``timeout``, fails)."""
        return self.free <= 0 or self.waiting > 0


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
    direct: int = 0
    """Sessions the project opened outside Django, open at the census (see PD208)."""


@dataclasses.dataclass(frozen=True)
class RefusedStatement:
    """A statement of the task's that did not run because pooldoctor's sessions are read-only."""

    statement: str
    """The statement, on one line, shortened."""
    alias: str
    by: str
    """``pooldoctor`` (refused before it reached the server: it would have made the session
    read-write, or it writes on an engine with no read-only session) or ``server`` (a write the
    read-only session refused, SQLSTATE 25006)."""
    file: str | None = None
    line: int | None = None
    function: str | None = None
    """Where the project's code ran it (None when no frame of the project's own was found)."""


@dataclasses.dataclass(frozen=True)
class DirectConnection:
    """A connection the task opened itself with psycopg, outside Django: no execute wrapper sees
    its statements, so only the server's read-only default (libpq's PGOPTIONS, unless the code
    passes ``options`` of its own) keeps it from writing."""

    read_only: bool | None
    """The server's ``default_transaction_read_only`` for the session (None: not reported, before
    PostgreSQL 14)."""
    file: str | None = None
    line: int | None = None
    function: str | None = None


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
    refused: tuple[RefusedStatement, ...] = ()
    """Statements of this task that pooldoctor's read-only guard or session refused."""
    direct: tuple[DirectConnection, ...] = ()
    """Connections this task opened outside Django."""


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


class SpanEnd(enum.StrEnum):
    """How one checkout ended, as the ledger saw it."""

    RETURNED = "returned"
    """Given back to the pool (or, without a pool, closed)."""
    LOST = "lost"
    """Never given back, and nothing is left that could: its thread ended, or the connection
    object was dropped or collected while checked out."""
    HELD = "held"
    """Still checked out by a live thread when the timeline was taken."""
    OPEN = "open"
    """Without a pool: still open when the timeline was taken (persistent connections)."""


@dataclasses.dataclass(frozen=True)
class ConnectionSpan:
    """One checkout of one connection, from checkout to return (or loss). Times are seconds
    since the timeline's origin."""

    connection: int
    """Which psycopg connection object (numbered in the order the process first saw them): the
    same number on several spans is one server session reused."""
    thread: str
    thread_role: str
    """Its kind: ThreadSensitiveContext executor, process-wide executor, loop default executor,
    main thread, worker thread ..."""
    task: str | None
    checked_out: float
    ended: float | None
    """When it was returned, or, for a lost one, when its thread ended (or the connection died);
    None when it is still out at the end (held, open, or lost without a known moment)."""
    end: SpanEnd
    thread_ended: float | None = None
    """When the thread that checked it out ended, if it has."""
    inherited: bool = False
    """Brought from the parent process by a fork (checked out before this process existed)."""


@dataclasses.dataclass(frozen=True)
class TaskSpan:
    """One task (or request round) along the timeline's axis."""

    label: str
    started: float
    ended: float | None
    ok: bool | None = None


@dataclasses.dataclass(frozen=True)
class Timeline:
    """Each connection's life in one process, in time: what the HTML report draws."""

    origin: float
    """Wall-clock time (``time.time()``) of second 0, to line processes up with each other."""
    duration: float
    spans: tuple[ConnectionSpan, ...]
    tasks: tuple[TaskSpan, ...] = ()
    dropped_spans: int = 0
    """Older checkouts left out: the ledger keeps the latest few thousand."""


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
    excerpt: tuple[SourceLine, ...] = ()
    """The project's source around :attr:`line`, read when the site was found (a saved report
    shows the code as it was measured)."""


@dataclasses.dataclass(frozen=True)
class SourceLine:
    number: int
    text: str


# The kinds of subject that are the project's own code: their verdicts are the project's verdict
# and decide the exit code (a built-in mode's verdict only describes the mode).
PROJECT_KINDS = frozenset({"wrapper", "task", "url"})


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
    timeline: Timeline | None = None


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Every census a subject's process took, and what ran it."""

    pooled: bool
    celery_task: bool
    census: tuple[TaskCensus, ...]


@dataclasses.dataclass(frozen=True)
class SubjectResult:
    """A check subject's verdict with the numbers that justify it (its one process's census is
    its :attr:`evidence`)."""

    JSON_EXTRAS: ClassVar[tuple[str, ...]] = ("tasks", "failed_tasks")

    subject: str
    kind: str
    """``mode``, ``wrapper`` or ``task`` (:data:`PROJECT_KINDS` are the project's own)."""
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
    stop: StopReason
    stop_detail: str | None
    evidence: Evidence
    description: str = ""
    tasks_planned: int | None = None
    """None only in a report saved before the key existed: then the tasks that ran."""
    seconds: float = 0.0
    leak_sites: tuple[LeakSite, ...] = ()
    checkouts: int = 0
    returns: int = 0
    fix: Fix | None = None
    """The fix fitted to this wrapper (patched into its source and measured), if any."""
    timeline: Timeline | None = None

    def __post_init__(self) -> None:
        if self.tasks_planned is None:
            object.__setattr__(self, "tasks_planned", len(self.evidence.census))

    @property
    def census(self) -> tuple[TaskCensus, ...]:
        return self.evidence.census

    @property
    def tasks(self) -> int:
        return len(self.evidence.census)

    @property
    def failed_tasks(self) -> int:
        return sum(1 for c in self.evidence.census if not c.ok)


@dataclasses.dataclass(frozen=True)
class PinnedConnection:
    """A connection checked out between tasks by a live thread (a live worker's census)."""

    thread: str
    thread_role: str
    held_seconds: float
    """Its age now: the age in the snapshot plus the time since the snapshot."""
    transaction: str
    backend_pid: int | None


@dataclasses.dataclass(frozen=True)
class ServerSession:
    """One row of pg_stat_activity (times as ISO 8601 strings, or None)."""

    pid: int
    application_name: str
    client_addr: str | None
    state: str | None
    backend_start: str | None
    state_change: str | None
    xact_start: str | None


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    """One OS process's connections, judged: a simulated worker process or a live one.

    The numbers are the process's own since it started (a prefork child's inherited counts are
    taken off). Fields a host cannot measure keep their defaults: simulate has no server rows per
    process, inspect no per-task census.
    """

    JSON_EXTRAS: ClassVar[tuple[str, ...]] = ("lost", "held", "opened", "inherited")

    pid: int
    verdict: Verdict
    summary: str
    tasks: int = 0
    failed_tasks: int = 0
    lost_slots: int = was("lost", default=0)
    """Connections given up while checked out (pool slots, or server connections without one)."""
    held_connections: int = was("held", default=0)
    """Connections checked out between tasks by live threads."""
    connections_opened: int = was("opened", default=0)
    """Server connections this process opened (churn)."""
    adopted_connections: int = was("inherited", default=0)
    """Idle connections it found in the pool it inherited from its parent at fork."""
    inherited_connections: int = 0
    """Connections another process opened that this one used: one socket, several processes."""
    inherited_pool: bool = False
    """It ran tasks on the pool its parent created before the fork."""
    crossed_replies: int = 0
    """Tasks that got another task's query result back as their own."""
    checkouts: int = 0
    returns: int = 0
    pool: PoolStats | None = None
    tasks_until_exhaustion: int | None = None
    leak_sites: tuple[LeakSite, ...] = ()
    census: tuple[TaskCensus, ...] = ()
    """The census after each task, when the host streams them (simulate)."""
    node: str | None = None
    """The worker node it belongs to (inspect)."""
    subject: str | None = None
    """The subject it ran (simulate)."""
    main: bool = False
    """The worker's main process runs the tasks itself (solo, threads pools)."""
    pinned: tuple[PinnedConnection, ...] = ()
    backend_pids: tuple[int, ...] = ()
    """Backend pids of its connections, as the process sees them."""
    server_sessions: tuple[ServerSession, ...] = ()
    """The server's rows for those backend pids."""
    gone_from_server: tuple[int, ...] = ()
    """Backend pids the process still has that the server no longer lists."""
    updated_seconds_ago: float | None = None
    """How old its snapshot was when it was read (inspect)."""
    timeline: Timeline | None = None
    """Its connections in time (simulate: the whole run; inspect: the latest checkouts)."""

    # inspect's first names for the same numbers, kept in the JSON for its readers
    @property
    def lost(self) -> int:
        return self.lost_slots

    @property
    def held(self) -> int:
        return self.held_connections

    @property
    def opened(self) -> int:
        return self.connections_opened

    @property
    def inherited(self) -> int:
        return self.adopted_connections


@dataclasses.dataclass(frozen=True)
class FleetResult:
    """A subject run on real worker processes (simulate): each process judged, and the fleet."""

    JSON_EXTRAS: ClassVar[tuple[str, ...]] = ("lost_slots", "held_connections", "evidence")

    subject: str
    kind: str
    verdict: Verdict
    summary: str
    workers: tuple[ProcessResult, ...]
    tasks: int
    """Tasks sent to the workers."""
    tasks_lost: int = 0
    failed_tasks: int = 0
    crossed_replies: int = 0
    shared_backends: Mapping[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    """Backend pid → the worker pids it answered: more than one means a shared socket."""
    connections_per_task: float = 0.0
    children_died: tuple[Mapping[str, str], ...] = ()
    stop_detail: str | None = None
    errors: Mapping[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    echoes: int = 0
    """Tasks whose first query echoed back (their own id or another's): the fork behaviour was
    measured on as many."""

    @property
    def lost_slots(self) -> int:
        return sum(w.lost_slots for w in self.workers)

    @property
    def held_connections(self) -> int:
        return sum(w.held_connections for w in self.workers)

    @property
    def evidence(self) -> dict[str, tuple[TaskCensus, ...]]:
        """Each worker process's census by pid (the key simulate's JSON always had)."""
        return {str(w.pid): w.census for w in self.workers}


class NodeStatus(enum.StrEnum):
    """How a live worker node answered the census."""

    ANSWERED = "answered"
    NOT_INSTALLED = "not-installed"
    """It answered the host's remote control, but pooldoctor is not installed in it."""
    NO_ANSWER = "no-answer"
    """Nothing came back within --timeout (a --destination that no live worker has)."""
    FAILED = "failed"
    """The census command itself raised in the worker."""


@dataclasses.dataclass(frozen=True)
class NodeResult:
    """A live worker node (inspect) and its processes."""

    node: str
    status: NodeStatus
    verdict: Verdict
    summary: str
    pid: int | None = None
    pool: str | None = None
    """The worker's pool: prefork, threads, solo ..."""
    concurrency: int | None = None
    alias: str | None = None
    tracking: bool | None = None
    pooldoctor: str | None = None
    processes: tuple[ProcessResult, ...] = ()


@dataclasses.dataclass(frozen=True)
class SessionGroup:
    """Sessions no worker process claims, grouped by who and what they are."""

    application_name: str
    client_addr: str | None
    state: str | None
    count: int
    pids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ServerResult:
    dsn: str
    """The project's database, password masked."""
    available: bool
    detail: str | None
    """Why the server view is missing, when it is."""
    sessions: int = 0
    """Client sessions on the database (pooldoctor's own excluded)."""
    unmatched: tuple[SessionGroup, ...] = ()


@dataclasses.dataclass(frozen=True)
class Finding:
    """A configuration or behaviour problem with a stable code and a fix."""

    code: str
    severity: Severity
    message: str
    fix: str
    subject: str | None = None


@dataclasses.dataclass(frozen=True)
class Fix:
    """A change to the project and what it measured in the same run.

    It is *proven* only when it was applied to ``applied_to`` (a project subject, or the subject
    of simulate's proof run) and that run measured ``clean``; otherwise it is the pattern that
    measured clean as built-in mode ``subject``, not run on the project's code."""

    subject: str | None
    """The pattern's name (a built-in mode, or ``discard-inherited-pool``)."""
    code: str
    applied_to: str | None = None
    """The subject the fix was applied to and measured on; None: not applied here."""
    measured: Verdict | None = None
    """What that run measured; None when the fix was not applied."""
    detail: str = ""
    """What the run measured, in words (for a fix that did not measure clean: what stayed)."""
    diff: str | None = None
    """A unified diff against the project's file, when pooldoctor could patch its source."""
    timeline: Timeline | None = None
    """The proof run's connections in time (each one returning, when the fix is proven)."""

    @property
    def proven(self) -> bool:
        return self.applied_to is not None and self.measured is Verdict.CLEAN


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
class Outcome:
    """What every command's report has: the verdict, one sentence, the versions, the findings."""

    verdict: Verdict
    headline: str
    environment: Mapping[str, str]
    findings: tuple[Finding, ...]
    seconds: float


@dataclasses.dataclass(frozen=True)
class Report(Outcome):
    """The whole outcome of ``pooldoctor check``: what every reporter renders."""

    database: DatabaseInfo
    results: tuple[SubjectResult, ...]
    fix: Fix | None = None
    """A way to run async ORM code that measured clean here, if any did."""


@dataclasses.dataclass(frozen=True)
class SimulateReport(Outcome):
    """The whole outcome of ``pooldoctor simulate``."""

    JSON_EXTRAS: ClassVar[tuple[str, ...]] = ("workers",)

    database: DatabaseInfo
    celery: Mapping[str, Any]
    """The worker as it ran: version, pool, concurrency, fix-up, warm parent, broker, handlers."""
    results: tuple[FleetResult, ...]
    fix: Fix | None = None
    server: Mapping[str, Any] | None = None
    """``simulate --server``: the web server as it ran (name, version, command line, interface,
    worker processes, requests); ``celery`` is then empty."""
    runner: Mapping[str, Any] | None = None
    """``simulate --runner NAME`` (not Celery): the task runner as it ran (name, version, kind
    of worker, concurrency, broker, what its Django integration does); ``celery`` is then
    empty."""

    @property
    def workers(self) -> list[dict[str, Any]]:
        """Every worker process of every subject, flat, each with its subject."""
        return [to_dict(w) for r in self.results for w in r.workers]


@dataclasses.dataclass(frozen=True)
class InspectReport(Outcome):
    """The whole outcome of ``pooldoctor inspect``."""

    broker: str
    """The app's broker URL, password masked."""
    timeout: float
    destination: tuple[str, ...]
    nodes: tuple[NodeResult, ...]
    server: ServerResult

    @property
    def processes(self) -> tuple[ProcessResult, ...]:
        return tuple(p for n in self.nodes for p in n.processes)


def task_census_from_dict(data: Mapping[str, Any]) -> TaskCensus:
    return from_dict(TaskCensus, data)


def leak_site_from_dict(data: Mapping[str, Any]) -> LeakSite:
    return from_dict(LeakSite, data)


@dataclasses.dataclass(frozen=True)
class ForkCheck:
    """What a prefork child got of the pool its parent had open at the fork, measured by
    ``check`` in a short-lived process (the run-time twin of scan's PD313)."""

    alias: str
    celery: str
    """The installed Celery's version."""
    app: str
    """The project's Celery app, ``module:attr``."""
    django_fixup: bool
    """The app has Celery's Django fix-up (whose child handler ran)."""
    receivers: tuple[str, ...]
    """The ``worker_process_init`` receivers that ran in the child (``module.function``)."""
    kept_pool: bool
    """The child's ``connections[alias]`` still held the parent's pool object, not closed."""
    detail: str
    """What the child held after its receivers ran, in words."""
    errors: tuple[str, ...] = ()
    """Receivers that raised, as Celery logs them (``module.function: Type: message``)."""
