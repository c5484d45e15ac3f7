"""Hand-built reports covering every verdict a reporter has to show: check's Report (with leak
sites), a scan's result and a simulation's report.

Built by hand (no Django, no database) so reporter tests check rendering only.
"""

from __future__ import annotations

import pytest

from pooldoctor.core.model import (
    DatabaseInfo,
    Finding,
    Fix,
    FleetResult,
    LeakKind,
    LeakSite,
    PoolStats,
    ProcessResult,
    Report,
    ServerView,
    Severity,
    SimulateReport,
    StackEntry,
    StopReason,
    SubjectRun,
    TaskCensus,
    ThreadConnection,
    Verdict,
)
from pooldoctor.core.verdict import subject_result
from pooldoctor.scan.model import ScanFinding, ScanResult

LEAK_SUMMARY = "3 tasks lost 3 pool slots (1.00 per task): the pool is exhausted after 4 tasks."
HEADLINE = "run_async_task leaks a pool slot per task: Celery workers will exhaust the pool."
FIX_CODE = "from asgiref.sync import async_to_sync\n\nasync_to_sync(main)()\n"
DEAD_THREAD = "ThreadPoolExecutor-0_0"
LOST_SITE = LeakSite(
    kind=LeakKind.LOST,
    file="shop/tasks.py",
    line=42,
    function="refresh_prices",
    thread="ThreadSensitiveContext executor",
    count=3,
    reason="thread ended 3 ms after its task; connection garbage-collected while checked out",
    tasks=("task 1 (ok)", "task 2 (raise-after-query)", "task 3 (ok)"),
    thread_names=(DEAD_THREAD,),
    stack=(
        StackEntry(file=None, line=None, function=None, folded=("django", "asgiref"), frames=17),
        StackEntry(file="shop/tasks.py", line=42, function="refresh_prices"),
        StackEntry(file=None, line=None, function=None, folded=("asyncio",), frames=3),
        StackEntry(file="shop/celery.py", line=9, function="run"),
    ),
)
PINNED_SITE = LeakSite(
    kind=LeakKind.PINNED,
    file=None,
    line=None,
    function=None,
    thread="process-wide sync_to_async executor",
    count=1,
    reason="held between tasks by a live thread, never returned; checked out 0.4 s ago",
    tasks=("task 1 (ok)",),
    thread_names=("ThreadPoolExecutor-1_0",),
)


def pool(size: int, available: int) -> PoolStats:
    return PoolStats(
        min_size=0,
        max_size=4,
        size=size,
        available=available,
        waiting=0,
        connections_opened=size,
        timeout=5.0,
    )


def main_connection(held_seconds: float = 0.0) -> ThreadConnection:
    return ThreadConnection(
        thread="MainThread",
        thread_role="main thread",
        thread_alive=True,
        open=False,
        checked_out=False,
        held=False,
        transaction="unknown",
        autocommit=None,
        held_seconds=held_seconds,
        backend_pid=None,
    )


def dead_connection(held_seconds: float = 0.4) -> ThreadConnection:
    return ThreadConnection(
        thread=DEAD_THREAD,
        thread_role="owned executor",
        thread_alive=False,
        open=True,
        checked_out=True,
        held=False,
        transaction="idle",
        autocommit=True,
        held_seconds=held_seconds,
        backend_pid=4242,
    )


def census(index: int, lost: int, *, ok: bool = True, seconds: float = 0.01) -> TaskCensus:
    connections = (main_connection(), dead_connection()) if index == 2 else (main_connection(),)
    return TaskCensus(
        index=index,
        kind="ok" if ok else "raise-after-query",
        ok=ok,
        error=None if ok else "ProbeFailure: raised on purpose",
        expected_error=not ok,
        seconds=seconds,
        pool=pool(size=lost, available=0),
        lost=lost,
        held=0,
        connections=connections,
        server=ServerView(backends=lost, idle_in_transaction=0, pids=tuple(range(100, 100 + lost))),
    )


def clean_census(index: int) -> TaskCensus:
    return TaskCensus(
        index=index,
        kind="ok",
        ok=True,
        error=None,
        expected_error=False,
        seconds=0.01,
        pool=pool(size=1, available=1),
        lost=0,
        held=0,
        connections=(main_connection(),),
        server=ServerView(backends=1, idle_in_transaction=0, pids=(200,)),
    )


def run(
    subject: str,
    kind: str,
    census_: tuple[TaskCensus, ...],
    *,
    stop: StopReason = StopReason.DONE,
    stop_detail: str | None = None,
    celery_task: bool = False,
    seconds: float = 1.25,
    leak_sites: tuple[LeakSite, ...] = (),
    checkouts: int = 3,
    returns: int = 3,
) -> SubjectRun:
    return SubjectRun(
        subject=subject,
        kind=kind,
        description=f"{subject} description",
        stop=stop,
        stop_detail=stop_detail,
        tasks_planned=3,
        census=census_,
        pooled=True,
        celery_task=celery_task,
        seconds=seconds,
        leak_sites=leak_sites,
        checkouts=checkouts,
        returns=returns,
    )


def build_report() -> Report:
    leaking = subject_result(
        run=run(
            "run_async_task",
            "wrapper",
            (census(0, 1), census(1, 2, ok=False), census(2, 3)),
            celery_task=True,
            leak_sites=(LOST_SITE,),
            returns=0,
        ),
        verdict=Verdict.LEAK,
        summary=LEAK_SUMMARY,
        lost_slots=3,
        lost_per_task=1.0,
        held_connections=0,
        tasks_until_exhaustion=4,
        symptoms=("PoolTimeout: couldn't get a connection after 5.00 sec (1 task)",),
    )
    clean = subject_result(
        run=run("async_to_sync", "mode", tuple(clean_census(i) for i in range(3))),
        verdict=Verdict.CLEAN,
        summary="3 tasks, no slot lost.",
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=0,
        tasks_until_exhaustion=None,
        symptoms=(),
    )
    pinned = subject_result(
        run=run(
            "thread_sensitive_context",
            "mode",
            tuple(clean_census(i) for i in range(3)),
            leak_sites=(PINNED_SITE,),
            returns=2,
        ),
        verdict=Verdict.PINNED,
        summary="1 connection stays checked out by a live executor thread.",
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=1,
        tasks_until_exhaustion=None,
        symptoms=(),
    )
    skipped = subject_result(
        run=run(
            "thread_insensitive",
            "mode",
            (),
            stop=StopReason.SKIPPED,
            stop_detail="asgiref 3.7 has no ThreadSensitiveContext",
            seconds=0.0,
        ),
        verdict=Verdict.SKIPPED,
        summary="Skipped: asgiref 3.7 has no ThreadSensitiveContext.",
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=0,
        tasks_until_exhaustion=None,
        symptoms=(),
    )
    return Report(
        verdict=Verdict.LEAK,
        headline=HEADLINE,
        environment={
            "django": "5.1.4",
            "psycopg": "3.2.3",
            "psycopg_pool": "3.2.4",
            "asgiref": "3.8.1",
            "celery": "5.4.0",
            "python": "3.12.7",
        },
        database=DatabaseInfo(
            alias="default",
            vendor="postgresql",
            dsn="postgresql://app:***@localhost:5432/app",
            pool={"max_size": 4, "timeout": 5.0},
            conn_max_age=0,
            server_version="16.4",
            max_connections=100,
            source="settings",
        ),
        results=(leaking, clean, pinned, skipped),
        findings=(
            Finding(
                code="PD101",
                severity=Severity.ERROR,
                message="run_async_task runs async ORM code in a thread that never closes it.",
                fix="Call close_old_connections() in the thread, or use async_to_sync.",
                subject="run_async_task",
            ),
        ),
        fix=Fix(subject="async_to_sync", code=FIX_CODE),
        seconds=4.5,
    )


def build_scan_result() -> ScanResult:
    return ScanResult(
        root="/srv/shop",
        findings=(
            ScanFinding(
                file="shop/tasks.py",
                line=42,
                column=9,
                code="PD303",
                severity=Severity.ERROR,
                message="A per-task ThreadSensitiveContext, cleanup outside it: 1 slot/task.",
                fix="Close connections inside the context, in finally.",
            ),
            ScanFinding(
                file="shop/settings.py",
                line=10,
                column=1,
                code="PD105",
                severity=Severity.INFO,
                message="A pool without CONN_HEALTH_CHECKS.",
                fix='"CONN_HEALTH_CHECKS": True',
            ),
        ),
        files_scanned=12,
    )


def worker(pid: int, verdict: str, *, sites: tuple[LeakSite, ...] = ()) -> ProcessResult:
    return ProcessResult(
        pid=pid,
        tasks=3,
        failed_tasks=1,
        crossed_replies=1 if verdict == "unsafe" else 0,
        inherited_connections=1 if verdict == "unsafe" else 0,
        inherited_pool=False,
        connections_opened=2,
        lost_slots=len(sites),
        held_connections=0,
        verdict=Verdict(verdict),
        summary=f"worker {pid} measured {verdict}",
        census=(census(0, 1), census(1, 2, ok=False), census(2, 3)),
        leak_sites=sites,
    )


def fleet(subject: str, kind: str, verdict: str, workers: tuple[ProcessResult, ...]) -> FleetResult:
    return FleetResult(
        subject=subject,
        kind=kind,
        verdict=Verdict(verdict),
        summary=f"{subject} measured {verdict} on {len(workers)} workers",
        workers=workers,
        tasks=6,
        tasks_lost=0,
        failed_tasks=2,
        crossed_replies=sum(w.crossed_replies for w in workers),
        shared_backends={4242: tuple(w.pid for w in workers)} if verdict == "unsafe" else {},
        connections_per_task=0.5,
        children_died=({"pid": "301", "signal": "SIGKILL"},) if verdict == "unsafe" else (),
        stop_detail=None,
        errors={"IndexError": 1} if verdict == "unsafe" else {},
        seconds=2.5,
    )


def build_simulate_report() -> SimulateReport:
    report = build_report()
    return SimulateReport(
        verdict=Verdict.UNSAFE,
        headline="UNSAFE: run_async_task: replies crossed between worker processes.",
        environment=report.environment,
        database=report.database,
        celery={
            "version": "5.5.3",
            "pool": "prefork",
            "concurrency": 2,
            "django_fixup": True,
            "warm_parent": True,
            "broker": "embedded",
            "signal_handlers": ["worker_process_init: shop.celery.reset"],
        },
        results=(
            fleet(
                "run_async_task",
                "wrapper",
                "unsafe",
                (worker(301, "unsafe", sites=(LOST_SITE,)), worker(302, "leak")),
            ),
            fleet("async_to_sync", "mode", "clean", (worker(303, "clean"),)),
            fleet("thread_insensitive", "mode", "leak", (worker(304, "leak"),)),
        ),
        findings=(
            Finding(
                code="PD403",
                severity=Severity.ERROR,
                message="Backend 4242 answered worker processes 301 and 302.",
                fix="Discard the inherited pool in worker_process_init.",
                subject="run_async_task",
            ),
        ),
        fix=Fix(subject="async_to_sync", code=FIX_CODE),
        seconds=9.5,
    )


@pytest.fixture
def sample_report() -> Report:
    return build_report()


@pytest.fixture
def sample_scan() -> ScanResult:
    return build_scan_result()


@pytest.fixture
def sample_simulation() -> SimulateReport:
    return build_simulate_report()
