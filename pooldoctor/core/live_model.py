"""What ``inspect`` measured and decided: frozen dataclasses, JSON out (``to_dict``) and back in
(:func:`report_from_dict`, for ``pooldoctor report SAVED.json``)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from pooldoctor.core.model import (
    Finding,
    LeakSite,
    PoolStats,
    Verdict,
    finding_from_dict,
    leak_site_from_dict,
)


class NodeStatus(enum.StrEnum):
    """How a worker node answered the census."""

    ANSWERED = "answered"
    NOT_INSTALLED = "not-installed"
    """It answered Celery's remote control, but pooldoctor.celery.install(app) is not in it."""
    NO_ANSWER = "no-answer"
    """Nothing came back within --timeout (a --destination that no live worker has)."""
    FAILED = "failed"
    """The census command itself raised in the worker."""


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
class PinnedConnection:
    """A connection checked out between tasks by a live thread."""

    thread: str
    thread_role: str
    held_seconds: float
    """Its age now: the age in the snapshot plus the time since the snapshot."""
    transaction: str
    backend_pid: int | None


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    """One worker process (the main process, or a prefork child) and its verdict."""

    node: str
    pid: int
    main: bool
    verdict: Verdict
    summary: str
    tasks: int
    failed_tasks: int
    lost: int
    held: int
    opened: int
    """Server connections this process opened since it started (churn)."""
    inherited: int
    """Connections it adopted from its parent's pool."""
    checkouts: int
    returns: int
    pool: PoolStats | None
    tasks_until_exhaustion: int | None
    pinned: tuple[PinnedConnection, ...]
    backend_pids: tuple[int, ...]
    """Backend pids of its connections, as the process sees them."""
    server_sessions: tuple[ServerSession, ...]
    """The server's rows for those backend pids."""
    gone_from_server: tuple[int, ...]
    """Backend pids the process still has that the server no longer lists."""
    leak_sites: tuple[LeakSite, ...]
    updated_seconds_ago: float | None


@dataclasses.dataclass(frozen=True)
class NodeResult:
    node: str
    status: NodeStatus
    verdict: Verdict
    summary: str
    pid: int | None = None
    pool: str | None = None
    """Celery's worker pool: prefork, threads, solo ..."""
    concurrency: int | None = None
    alias: str | None = None
    tracking: bool | None = None
    pooldoctor: str | None = None
    processes: tuple[ProcessResult, ...] = ()


@dataclasses.dataclass(frozen=True)
class InspectReport:
    verdict: Verdict
    headline: str
    environment: Mapping[str, str]
    broker: str
    """The app's broker URL, password masked."""
    timeout: float
    destination: tuple[str, ...]
    nodes: tuple[NodeResult, ...]
    server: ServerResult
    findings: tuple[Finding, ...]
    seconds: float

    @property
    def processes(self) -> tuple[ProcessResult, ...]:
        return tuple(p for n in self.nodes for p in n.processes)


def report_from_dict(data: Mapping[str, Any]) -> InspectReport:
    """An :class:`InspectReport` from ``inspect --format json``."""
    server = data["server"]
    return InspectReport(
        verdict=Verdict(data["verdict"]),
        headline=data["headline"],
        environment=dict(data["environment"]),
        broker=data["broker"],
        timeout=data["timeout"],
        destination=tuple(data["destination"]),
        nodes=tuple(_node(n) for n in data["nodes"]),
        server=ServerResult(
            dsn=server["dsn"],
            available=server["available"],
            detail=server["detail"],
            sessions=server["sessions"],
            unmatched=tuple(
                SessionGroup(**{**g, "pids": tuple(g["pids"])}) for g in server["unmatched"]
            ),
        ),
        findings=tuple(finding_from_dict(f) for f in data["findings"]),
        seconds=data["seconds"],
    )


def _node(data: Mapping[str, Any]) -> NodeResult:
    return NodeResult(
        node=data["node"],
        status=NodeStatus(data["status"]),
        verdict=Verdict(data["verdict"]),
        summary=data["summary"],
        pid=data["pid"],
        pool=data["pool"],
        concurrency=data["concurrency"],
        alias=data["alias"],
        tracking=data["tracking"],
        pooldoctor=data["pooldoctor"],
        processes=tuple(_process(p) for p in data["processes"]),
    )


def _process(data: Mapping[str, Any]) -> ProcessResult:
    pool = data["pool"]
    return ProcessResult(
        node=data["node"],
        pid=data["pid"],
        main=data["main"],
        verdict=Verdict(data["verdict"]),
        summary=data["summary"],
        tasks=data["tasks"],
        failed_tasks=data["failed_tasks"],
        lost=data["lost"],
        held=data["held"],
        opened=data["opened"],
        inherited=data["inherited"],
        checkouts=data["checkouts"],
        returns=data["returns"],
        pool=PoolStats(**pool) if pool else None,
        tasks_until_exhaustion=data["tasks_until_exhaustion"],
        pinned=tuple(PinnedConnection(**c) for c in data["pinned"]),
        backend_pids=tuple(data["backend_pids"]),
        server_sessions=tuple(ServerSession(**s) for s in data["server_sessions"]),
        gone_from_server=tuple(data["gone_from_server"]),
        leak_sites=tuple(leak_site_from_dict(s) for s in data["leak_sites"]),
        updated_seconds_ago=data["updated_seconds_ago"],
    )
