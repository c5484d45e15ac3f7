"""``simulate --runner django-tasks`` starts the real db_worker (or db_async_worker) command on the
run's own queue in the project's database."""

from __future__ import annotations

import importlib.util
from typing import Any

import psycopg
import pytest
from conftest import pooldoctor, pooldoctor_backends

from .conftest import (
    CHECKOUT_LINE,
    FIXED,
    LEAKY,
    SETTINGS,
    SYNC,
    TABLE,
    TASKSPROJ,
    THREAD_INSENSITIVE_LINE,
    results,
    run_json,
    site_lines,
)

ASYNC_WORKER = importlib.util.find_spec("django_tasks_db_async") is not None
"""django-tasks-db-async needs Python 3.12 and Django 5.2: CI's lowest environment has neither."""


@pytest.fixture(scope="module")
def simulated(tasks_database: str) -> dict[str, Any]:
    code, report = run_json(
        "simulate", "--runner", "django-tasks", *SETTINGS, "--database", tasks_database,
        "--allow-writes", "--task", SYNC, "--task", LEAKY, "--task", FIXED,
        "--modes", "async-to-sync", "--tasks", "6")  # fmt: skip
    report["exit_code"] = code
    return report


def test_simulate_db_worker_default_path_clean_and_the_async_task_leaks(
    simulated: dict[str, Any],
) -> None:
    by = results(simulated)
    assert simulated["exit_code"] == 1 and simulated["verdict"] == "leak", simulated["headline"]
    assert by[SYNC]["verdict"] == "clean" and by[SYNC]["tasks"] == 6
    assert by[FIXED]["verdict"] == "clean"  # the project's fix: thread-sensitive sync_to_async
    leaky = by[LEAKY]
    assert leaky["verdict"] == "leak" and leaky["lost_slots"] >= 3
    # Stopped at exhaustion (pool max_size 4), never after the pool's 30 s timeout.
    assert "exhaustion" in (leaky["stop_detail"] or "")
    assert ("tasksproj/tasks.py", THREAD_INSENSITIVE_LINE) in site_lines(leaky)
    runner = simulated["runner"]
    assert runner["name"] == "django-tasks" and runner["forks"] is False
    # db_worker runs one task at a time, whatever --workers (default 4) says.
    assert runner["concurrency"] == 1
    assert "db_worker" in runner["command"]
    assert "close_old_connections" in runner["django_integration"]
    # No fork hazard to prove: the fix shown is the built-in pattern that measured clean.
    assert by["async-to-sync"]["verdict"] == "clean"
    assert simulated["fix"]["subject"] == "async-to-sync"
    assert simulated["fix"]["applied_to"] is None


def test_simulate_leaves_no_rows_and_no_sessions(
    simulated: dict[str, Any], tasks_database: str
) -> None:
    with psycopg.connect(tasks_database, autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    assert rows is not None and rows[0] == 0
    assert pooldoctor_backends(tasks_database, this_database=True) == []


def test_simulate_refuses_a_read_only_run(tasks_database: str) -> None:
    proc = pooldoctor("simulate", "--runner", "django-tasks", *SETTINGS, "--database",
                      tasks_database, "--tasks", "2", cwd=TASKSPROJ)  # fmt: skip
    assert proc.returncode != 0 and "--allow-writes" in proc.stderr


def test_simulate_db_async_worker(tasks_database: str) -> None:
    """db_async_worker, run with --workers 1 (its --concurrency): each task's record is written
    after its own loop iteration's close_old_connections(), and is exact only when no other task
    runs meanwhile: with several at once on the loop, a record also counts the connections the
    concurrent tasks hold at that moment (the census is the process's). Where the worker is not
    installed (CI's lowest environment), the run says what to install."""
    if not ASYNC_WORKER:
        proc = pooldoctor("simulate", "--runner", "django-tasks", "--pool", "db_async_worker",
                          *SETTINGS, "--database", tasks_database, "--allow-writes", "--task",
                          SYNC, "--tasks", "2", cwd=TASKSPROJ)  # fmt: skip
        assert proc.returncode != 0
        assert "pip install django-tasks-db-async" in proc.stderr, proc.stderr
        return
    code, report = run_json(
        "simulate", "--runner", "django-tasks", "--pool", "db_async_worker", "--workers", "1",
        *SETTINGS, "--database", tasks_database, "--allow-writes", "--task", SYNC, "--task",
        LEAKY, "--task", FIXED, "--tasks", "6")  # fmt: skip
    by = results(report)
    runner = report["runner"]
    assert runner["pool"] == "db_async_worker" and runner["concurrency"] == 1
    assert "db_async_worker" in runner["command"] and "--concurrency 1" in runner["command"]
    assert by[SYNC]["verdict"] == "clean" and by[SYNC]["tasks"] == 6, report["headline"]
    assert by[FIXED]["verdict"] == "clean"
    # Not lost here: the worker's one event loop lives as long as the worker, and so does its
    # default executor, whose thread runs every thread_sensitive=False call and keeps the
    # connection it opened checked out for good: one slot pinned per executor thread.
    leaky = by[LEAKY]
    assert (leaky["verdict"], leaky["lost_slots"], leaky["held_connections"]) == ("pinned", 0, 1)
    assert leaky["tasks"] == 6
    pinned = site_lines(leaky, "pinned")
    assert {("tasksproj/tasks.py", CHECKOUT_LINE),
            ("tasksproj/tasks.py", THREAD_INSENSITIVE_LINE)} <= pinned  # fmt: skip
    assert "asyncio default executor" in report["headline"]
    assert code == 0  # pinned is a finding, not a failure
    with psycopg.connect(tasks_database, autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    assert rows is not None and rows[0] == 0
    assert pooldoctor_backends(tasks_database, this_database=True) == []
