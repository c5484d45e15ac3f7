"""``check --task`` runs a Django task the way its backend's worker does: db_worker's loop for a
DatabaseBackend task, the ImmediateBackend's own enqueue (inside a request's clean-up) for one
whose backend is Immediate."""

from __future__ import annotations

from pathlib import Path

import django
import pytest

from .conftest import (
    FIXED,
    LEAKY,
    SETTINGS,
    SYNC,
    THREAD_INSENSITIVE_LINE,
    project_env,
    results,
    run_json,
    site_lines,
)

CASES = [(SYNC, "clean"), (FIXED, "clean"), (LEAKY, "leak")]


@pytest.mark.parametrize(("task", "verdict"), CASES)
def test_check_task_runs_a_django_task_as_db_worker_does(
    tasks_database: str, task: str, verdict: str, tmp_path: Path
) -> None:
    log = tmp_path / "senders.log"
    env = project_env(tasks_database, TASKSPROJ_SIGNALS_LOG=str(log))
    code, report = run_json("check", *SETTINGS, "--database", tasks_database, "--task", task,
                            env=env)  # fmt: skip
    result = results(report)[task]
    assert result["verdict"] == verdict, report["headline"]
    # Sent as db_worker sends it: by the task's DatabaseBackend, once per task run.
    senders = log.read_text().splitlines()
    assert set(senders) == {"django_tasks_db.backend.DatabaseBackend"}
    assert len(senders) == result["tasks"]
    if verdict == "leak":
        assert code == 1
        assert ("tasksproj/tasks.py", THREAD_INSENSITIVE_LINE) in site_lines(result)
    else:
        assert code == 0 and result["lost_slots"] == 0


@pytest.mark.parametrize(("task", "verdict"), CASES)
def test_check_task_runs_an_immediate_backend_task_through_its_enqueue(
    tasks_database: str, task: str, verdict: str, tmp_path: Path
) -> None:
    """TASKSPROJ_IMMEDIATE=1: the project's default backend is the ImmediateBackend (Django's,
    or the backport's on Django 5.x), which runs the task in the enqueuing thread."""
    log = tmp_path / "senders.log"
    env = project_env(tasks_database, TASKSPROJ_IMMEDIATE="1", TASKSPROJ_SIGNALS_LOG=str(log))
    code, report = run_json("check", *SETTINGS, "--database", tasks_database, "--task", task,
                            env=env)  # fmt: skip
    result = results(report)[task]
    assert result["verdict"] == verdict, report["headline"]
    senders = log.read_text().splitlines()
    assert len(senders) == result["tasks"] and result["tasks"] > 0
    # Django's own from 6.0; before it, the backport's (its Task objects are the host's too).
    framework = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    assert set(senders) == {f"{framework}.backends.immediate.ImmediateBackend"}
    if verdict == "leak":
        assert code == 1 and result["lost_slots"] > 0
        assert ("tasksproj/tasks.py", THREAD_INSENSITIVE_LINE) in site_lines(result)
    else:
        assert code == 0 and result["lost_slots"] == 0 and result["held_connections"] == 0
