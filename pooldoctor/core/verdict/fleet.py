"""Pure rules for a simulated fleet: per-worker records in, per-worker and fleet verdicts out.

A worker process's records are turned into the same census ``check`` takes, and judged by the
same rules (:func:`pooldoctor.core.verdict.judge`); above them stands ``unsafe``: replies crossed
between processes, or a connection another process opened in use — silent cross-talk, the worst
failure there is.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pooldoctor.core.model import (
    DirectConnection,
    FleetResult,
    PoolStats,
    ProcessResult,
    RefusedStatement,
    StopReason,
    SubjectRun,
    TaskCensus,
    ThreadConnection,
    Timeline,
    Verdict,
    from_dict,
    leak_site_from_dict,
)
from pooldoctor.core.verdict import judge, unawaited_reason, worst

# Connections opened per task, past each process's warm-up, above which the pool is being rebuilt
# or refilled rather than reused.
CHURN_PER_TASK = 0.5
# Tasks a worker process must have run for its connections to count towards churn. Its first
# task warms the pool up (min_size connections, more if the task needed them), which is discounted;
# of what remains, one connection replaced once (the server closed it, a failed task's was
# discarded) over the 5 tasks after the first is 0.2 per task, well under CHURN_PER_TASK, while a
# pool rebuilt around every task is 1 per task or more. With fewer tasks, one reconnect looks like
# churn: three tasks per child are the pool warming up, not a finding.
CHURN_MIN_TASKS = 6


@dataclasses.dataclass(frozen=True)
class Churn:
    """New server connections past warm-up, over the processes that ran enough tasks."""

    tasks: int
    """Tasks after each counted process's first."""
    opened: int
    """Connections those processes opened past their warm-up."""
    processes: int
    """Worker processes counted (each ran at least CHURN_MIN_TASKS tasks)."""
    rebuilt: bool
    """The pool itself was replaced between tasks (gone after a task, or its own count of opened
    connections stayed at its warm-up while the process kept opening), rather than the same pool
    opening replacements for connections it lost or the server closed."""

    @property
    def per_task(self) -> float:
        return round(self.opened / max(1, self.tasks), 2)


def warmup(worker: ProcessResult) -> int:
    """Connections a process opens just to get its pool going: the pool's own count after the
    first task (its min_size, and more if that task needed them), at least its min_size and the
    largest it grew to, and at least one (a process without a pool at census time, its pool
    closed after each task, still opened one for its first task)."""
    pools = [c.pool for c in worker.census if c.pool is not None]
    first = worker.census[0].pool if worker.census else None
    return max(
        1,
        first.connections_opened if first else 0,
        max((p.min_size for p in pools), default=0),
        max((p.size for p in pools), default=0),
    )


def churn(result: FleetResult) -> Churn | None:
    """Churn over the processes with CHURN_MIN_TASKS tasks or more; None when none had as many
    (too few tasks to tell churn from the pool warming up)."""
    counted = [w for w in result.workers if w.tasks >= CHURN_MIN_TASKS]
    if not counted:
        return None
    rebuilt = False
    opened = 0
    for worker in counted:
        extra = max(0, worker.connections_opened - warmup(worker))
        opened += extra
        pools = [c.pool for c in worker.census]
        last = next((p for p in reversed(pools) if p is not None), None)
        if extra and (None in pools or last is None or last.connections_opened <= warmup(worker)):
            rebuilt = True
    return Churn(
        tasks=sum(w.tasks - 1 for w in counted),
        opened=opened,
        processes=len(counted),
        rebuilt=rebuilt,
    )


def judge_fleet(subject: str, kind: str, sent: Sequence[Mapping[str, Any]],
                records: Sequence[Mapping[str, Any]], children_died: Sequence[Mapping[str, str]],
                stop_detail: str | None, seconds: float,
                leak_sites: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
                timelines: Mapping[int, Mapping[str, Any]] | None = None,
                ) -> FleetResult:  # fmt: skip
    by_pid: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_pid[int(record["pid"])].append(record)
    stopped_early = bool(stop_detail and "exhaustion" in stop_detail)
    sites, lives = leak_sites or {}, timelines or {}
    workers = tuple(
        dataclasses.replace(
            judge_worker(pid, sorted(rs, key=lambda r: r["index"]), sites.get(pid, ())),
            subject=subject,
            timeline=from_dict(Timeline, lives[pid]) if pid in lives else None,
        )
        for pid, rs in sorted(by_pid.items())
    )
    backends: dict[int, set[int]] = defaultdict(set)
    for record in records:
        if record.get("backend_pid"):
            backends[int(record["backend_pid"])].add(int(record["pid"]))
    shared = {b: tuple(sorted(p)) for b, p in sorted(backends.items()) if len(p) > 1}
    errors: dict[str, int] = defaultdict(int)
    for record in records:
        if record.get("error") and not record.get("expected_error"):
            errors[error_kind(record["error"])] += 1
    recorded = {r["task_id"] for r in records}
    lost = 0 if stopped_early else sum(1 for s in sent if s["task_id"] not in recorded)
    verdict = worst([w.verdict for w in workers]) if workers else Verdict.ERROR
    if children_died or lost:
        verdict = worst([verdict, Verdict.ERROR])
    echoes = sum(1 for r in records if r.get("echo") is not None)
    never = never_ran(kind, records, echoes)
    if never is not None:
        verdict = worst([verdict, Verdict.ERROR])
    crossed = sum(w.crossed_replies for w in workers)
    opened = sum(w.connections_opened for w in workers)
    return FleetResult(
        subject=subject,
        kind=kind,
        verdict=verdict,
        summary=never or _fleet_summary(workers, crossed, shared, lost, children_died, stop_detail),
        workers=workers,
        tasks=len(sent),
        tasks_lost=lost,
        failed_tasks=sum(w.failed_tasks for w in workers),
        crossed_replies=crossed,
        shared_backends=shared,
        connections_per_task=round(opened / max(1, len(records)), 2),
        children_died=tuple(children_died),
        stop_detail=stop_detail,
        errors=dict(sorted(errors.items())),
        seconds=seconds,
        echoes=echoes,
    )


def never_ran(kind: str, records: Sequence[Mapping[str, Any]], echoes: int) -> str | None:
    """Why the subject's task code never ran on the workers, or None. The probe always queries,
    so its first query echoes; a project task is asked to use the database. A task that failed
    (the probe's scheduled failures included) ran: on a shared socket the echo itself may fail,
    and the errors tell that story."""
    unawaited = unawaited_reason(r.get("error") for r in records)
    if unawaited is not None:
        return unawaited
    if not records or echoes or any(r.get("error") for r in records):
        return None
    if kind == "task":
        return (f"the task made no query on this alias in {len(records)} runs: nothing was "
                "measured (check --args/--kwargs, and --alias)")  # fmt: skip
    return (
        f"no task's query reached the database in {len(records)} tasks: the "
        f"{'wrapper never ran the task' if kind == 'wrapper' else 'probe never ran'}"
    )


def judge_worker(pid: int, records: Sequence[Mapping[str, Any]],
                 leak_sites: Sequence[Mapping[str, Any]] = ()) -> ProcessResult:  # fmt: skip
    census = tuple(to_census(r) for r in records)
    exhausted = any(r.get("exhausted") for r in records)
    run = SubjectRun(
        subject=str(pid),
        kind="worker",
        description="",
        stop=StopReason.EXHAUSTED if exhausted else StopReason.DONE,
        stop_detail=next((r["exhausted"] for r in records if r.get("exhausted")), None),
        tasks_planned=len(records),
        census=census,
        pooled=any(r.get("pool") for r in records),
    )
    base = judge(run, task_threads=max((int(r.get("task_threads", 1)) for r in records),
                                       default=1))  # fmt: skip
    crossed = sum(1 for r in records if r.get("echo") is not None and r["echo"] != r.get("token"))
    foreign = max(
        (sum(1 for c in t.connections if c.checked_out and c.opened_in_pid not in (None, pid))
         for t in census),
        default=0,
    )  # fmt: skip
    # An inherited connection is back in the pool by the time the census is taken: the backend
    # that answered each task's query says whether it was used, whether or not replies crossed.
    elsewhere = {c.backend_pid for t in census for c in t.connections
                 if c.backend_pid is not None and c.opened_in_pid not in (None, pid)}  # fmt: skip
    answered = {r["backend_pid"] for r in records if r.get("backend_pid") in elsewhere}
    foreign = max(foreign, len(answered))
    verdict, summary = base.verdict, base.summary
    if crossed or foreign:
        verdict = Verdict.UNSAFE
        parts = []
        if crossed:
            parts.append(f"{crossed} of {len(records)} replies belonged to another task")
        if foreign:
            parts.append(f"used {foreign} connection(s) opened by another process")
        summary = "; ".join(parts)
    return ProcessResult(
        pid=pid,
        verdict=verdict,
        summary=summary,
        tasks=len(records),
        failed_tasks=sum(1 for r in records if not r["ok"]),
        lost_slots=base.lost_slots,
        held_connections=base.held_connections,
        connections_opened=sum(int(r.get("opened", 0)) for r in records),
        adopted_connections=max(int(r.get("inherited_connections", 0)) for r in records),
        inherited_connections=foreign,
        inherited_pool=any(r.get("inherited_pool_in_use") for r in records),
        crossed_replies=crossed,
        pool=census[-1].pool if census else None,
        tasks_until_exhaustion=base.tasks_until_exhaustion,
        leak_sites=tuple(leak_site_from_dict(site) for site in leak_sites),
        census=census,
    )


def to_census(record: Mapping[str, Any]) -> TaskCensus:
    pool = record.get("pool")
    return TaskCensus(
        index=int(record["index"]),
        kind=str(record.get("state", "")),
        ok=bool(record["ok"]),
        error=record.get("error"),
        expected_error=bool(record.get("expected_error")),
        seconds=float(record.get("seconds", 0.0)),
        pool=PoolStats(**pool) if pool else None,
        lost=int(record["lost"]),
        held=int(record["held"]),
        connections=tuple(ThreadConnection(**c) for c in record["connections"]),
        server=None,
        sqlstate=record.get("sqlstate"),
        refused=tuple(from_dict(RefusedStatement, r) for r in record.get("refused", ())),
        direct=tuple(from_dict(DirectConnection, d) for d in record.get("direct", ())),
    )


def error_kind(error: str) -> str:
    """Errors by kind: pool timeout, closed pool, protocol/SSL, server closed the connection."""
    text = error.lower()
    if (
        "couldn't get a connection" in text
        or "pooltimeout" in text
        or "waited for a connection" in text
    ):
        return "pool timeout"
    if "pool" in text and "closed" in text:
        return "closed pool"
    if "server closed the connection" in text or "connection socket closed" in text:
        return "server closed the connection"
    if "ssl" in text or "protocol" in text or "unexpected" in text or "lost synchron" in text:
        return "protocol error"
    return error.split(":", 1)[0]


def _fleet_summary(workers: Sequence[ProcessResult], crossed: int,
                   shared: Mapping[int, tuple[int, ...]], lost: int,
                   died: Sequence[Mapping[str, str]], stop: str | None) -> str:  # fmt: skip
    parts = []
    if crossed:
        parts.append(f"{crossed} replies crossed between processes")
    if shared:
        backend, pids = next(iter(shared.items()))
        parts.append(f"backend {backend} answered worker processes {', '.join(map(str, pids))}")
    bad = [w for w in workers if w.verdict is not Verdict.CLEAN]
    for worker in bad[:2]:
        parts.append(f"worker {worker.pid}: {worker.verdict}: {worker.summary}")
    if lost:
        parts.append(f"{lost} tasks never came back")
    for child in died:
        parts.append(f"child {child['name']} (pid {child['pid']}) died: {child['how']}")
    if stop and not parts:
        parts.append(stop)
    return "; ".join(parts) or f"{len(workers)} worker processes: nothing held, lost or crossed"
