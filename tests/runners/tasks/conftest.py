"""Django's Tasks' tests share one database with the project's migrations applied (a user's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import PROJECTS, pooldoctor, scratch_database

TASKSPROJ = PROJECTS / "tasksproj"
SETTINGS = ("--settings", "tasksproj.settings")
SYNC, LEAKY, FIXED = (
    f"tasksproj.tasks.{n}"
    for n in ("count_databases", "count_databases_async", "count_databases_async_fixed")
)
TABLE = "django_tasks_database_dbtaskresult"
DEADLINE = 30.0

try:  # in the test extra: a missing one is a broken environment, never a skipped test
    import django_tasks_db  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("django-tasks-db is missing: pip install -e '.[test]'") from exc


def line_of(marker: str) -> int:
    """The line of tasksproj/tasks.py holding ``marker`` (the tests name lines by their text)."""
    lines = (TASKSPROJ / "tasksproj" / "tasks.py").read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


CHECKOUT_LINE = line_of("with connection.cursor()")
"""Where the task's query takes its connection."""
THREAD_INSENSITIVE_LINE = line_of("await sync_to_async(databases, thread_sensitive=False)")
"""The leaking task's sync_to_async(thread_sensitive=False) call."""


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "TASKSPROJ_DB": urlsplit(database_url).path.lstrip("/"),
           "PYTHONPATH": str(TASKSPROJ), **extra}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="session")
def tasks_database(database_url: str) -> Iterator[str]:
    """A database of the tests' own, with the project's migrations applied (as a user's)."""
    with scratch_database(database_url, "pooldoctor_tasks") as url:
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0", *SETTINGS],
                       cwd=TASKSPROJ, env=project_env(url), check=True, timeout=120)  # fmt: skip
        yield url


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    proc = pooldoctor(*args, "--format", "json", cwd=TASKSPROJ, timeout=180, env=env or {})
    assert proc.stdout.startswith("{"), f"exit {proc.returncode}: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in report["results"]}


def site_lines(result: dict[str, Any], kind: str = "lost") -> set[tuple[str, int]]:
    """The project's lines in the sites of the connections lost (or pinned): where the connection
    was taken and the frames above it (the task's sync_to_async call)."""
    sites = result.get("leak_sites") or [s for w in result.get("workers", [])
                                         for s in w.get("leak_sites", [])]  # fmt: skip
    found = [s for s in sites if s.get("kind") == kind and s.get("file")]
    return {(s["file"], s["line"]) for s in found} | {
        (f["file"], f["line"]) for s in found for f in s.get("stack", []) if f.get("file")
    }
