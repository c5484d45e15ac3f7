"""A hand-built Report covering every verdict a reporter has to show.

Built by hand (no Django, no database) so reporter tests check rendering only.
"""

from __future__ import annotations

import pytest

from pooldoctor.model import (
    DatabaseInfo,
    Finding,
    PoolStats,
    Report,
    ServerView,
    Severity,
    StopReason,
    SubjectResult,
    SubjectRun,
    TaskCensus,
    ThreadConnection,
    Verdict,
)

LEAK_SUMMARY = "3 tasks lost 3 pool slots (1.00 per task): the pool is exhausted after 4 tasks."
HEADLINE = "run_async_task leaks a pool slot per task: Celery workers will exhaust the pool."
FIX_CODE = "from asgiref.sync import async_to_sync\n\nasync_to_sync(main)()\n"
DEAD_THREAD = "ThreadPoolExecutor-0_0"


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
    )


def build_report() -> Report:
    leaking = SubjectResult(
        run=run(
            "run_async_task",
            "wrapper",
            (census(0, 1), census(1, 2, ok=False), census(2, 3)),
            celery_task=True,
        ),
        verdict=Verdict.LEAK,
        summary=LEAK_SUMMARY,
        lost_slots=3,
        lost_per_task=1.0,
        held_connections=0,
        tasks_until_exhaustion=4,
        symptoms=("PoolTimeout: couldn't get a connection after 5.00 sec (1 task)",),
    )
    clean = SubjectResult(
        run=run("async_to_sync", "mode", tuple(clean_census(i) for i in range(3))),
        verdict=Verdict.CLEAN,
        summary="3 tasks, no slot lost.",
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=0,
        tasks_until_exhaustion=None,
        symptoms=(),
    )
    pinned = SubjectResult(
        run=run("thread_sensitive_context", "mode", tuple(clean_census(i) for i in range(3))),
        verdict=Verdict.PINNED,
        summary="1 connection stays checked out by a live executor thread.",
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=1,
        tasks_until_exhaustion=None,
        symptoms=(),
    )
    skipped = SubjectResult(
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
        fix=FIX_CODE,
        fix_subject="async_to_sync",
        seconds=4.5,
    )


@pytest.fixture
def sample_report() -> Report:
    return build_report()
