"""``check --task``: the project's own tasks, run through its own decorator, measured like wrappers.

Real CLI processes, the real PostgreSQL (and the embedded one for the migrate path), the fixture
projects. A leak site must name the line of the project's task module that checked the connection
out; the lines are read from the fixture's file, so the tests do not depend on line numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import FIXTURES, PROJECTS, by_subject, check_json, pooldoctor, scratch_database

LEAKY = FIXTURES / "leaky"
FIXED = FIXTURES / "fixed"
EXTRAS = PROJECTS / "extras"
TASKS_FILE = "mysite/tasks.py"
SETTINGS = ("--settings", "mysite.settings")


def task_line(project: Path, function: str, text: str, file: str = TASKS_FILE) -> int:
    """The first line in ``function`` of the project's module that contains ``text``."""
    lines = (project / file).read_text().splitlines()
    start = next(n for n, line in enumerate(lines, 1) if f"def {function}(" in line)
    return next(n for n, line in enumerate(lines, 1) if n > start and text in line)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """A usage error: the exit code, one line on stderr, no traceback, no report."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pooldoctor: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def leaky_report(database_url: str) -> tuple[int, dict[str, Any]]:
    # GIVEN the leaking recipe's project, and its task that reads the server's catalogue
    # WHEN pooldoctor runs that task (and nothing else: no --modes)
    return check_json(
        *SETTINGS, "--task", "mysite.tasks.count_databases", cwd=LEAKY, database_url=database_url
    )


def test_a_leaking_task_is_a_leak_named_at_its_own_line(
    leaky_report: tuple[int, dict[str, Any]],
) -> None:
    code, report = leaky_report
    # THEN the task alone was measured, as a task, and it leaks one slot per run
    assert code == 1
    assert report["verdict"] == "leak"
    assert [r["subject"] for r in report["results"]] == ["mysite.tasks.count_databases"]
    [result] = report["results"]
    assert result["kind"] == "task"
    assert result["verdict"] == "leak"
    assert result["lost_slots"] == 4
    assert result["lost_per_task"] == 1.0
    assert result["tasks_until_exhaustion"] == 4
    assert result["stop"] == "exhausted"
    assert result["evidence"]["celery_task"] is True
    assert {c["kind"] for c in result["evidence"]["census"]} == {"task"}
    # AND the leak site is the task's first query, in the project's own task module
    [site] = result["leak_sites"]
    assert site["kind"] == "lost"
    assert (site["file"], site["line"], site["function"]) == (
        TASKS_FILE,
        task_line(LEAKY, "count_databases", "await ServerDatabase.objects.acount()"),
        "count_databases",
    )
    assert site["thread"] == "ThreadSensitiveContext executor"
    assert site["count"] == 4
    assert site["tasks"] == ["task 1", "task 2", "task 3", "task 4"]
    named = [(e["file"], e["function"]) for e in site["stack"] if e["file"]]
    assert named[0] == (TASKS_FILE, "count_databases")
    assert ("mysite/celeryapp.py", "sync_wrapper") in named
    # AND the project's verdict is the task's, with its finding
    assert report["headline"].startswith("LEAK: mysite.tasks.count_databases lost 4 pool slots")
    pd201 = [f for f in report["findings"] if f["code"] == "PD201"]
    assert [f["subject"] for f in pd201] == ["mysite.tasks.count_databases"]
    assert "PD204" not in {f["code"] for f in report["findings"]}


def test_the_text_report_names_the_task_line(database_url: str) -> None:
    proc = pooldoctor(
        "check", *SETTINGS, "--task", "mysite.tasks.count_databases", "--database",
        database_url, cwd=LEAKY,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    line = task_line(LEAKY, "count_databases", "await ServerDatabase.objects.acount()")
    assert f"LOST    {TASKS_FILE}:{line} in count_databases() via ThreadSensitiveContext" in (
        proc.stdout
    )
    assert "mysite.tasks.count_databases (task): leak" in proc.stdout


def test_the_fixed_task_is_clean_and_modes_run_only_when_named(database_url: str) -> None:
    # GIVEN the fixed decorator, the same task, and one built-in mode asked for explicitly
    code, report = check_json(
        *SETTINGS, "--task", "mysite.tasks.count_databases", "--modes", "asyncio-run",
        cwd=FIXED, database_url=database_url,
    )  # fmt: skip
    # THEN the task is clean: every run succeeded, every checkout came back
    results = by_subject(report)
    assert list(results) == ["asyncio-run", "mysite.tasks.count_databases"]
    task = results["mysite.tasks.count_databases"]
    assert task["kind"] == "task"
    assert task["verdict"] == "clean"
    assert task["tasks"] == 12
    assert task["failed_tasks"] == 0
    assert task["lost_slots"] == 0
    assert task["held_connections"] == 0
    assert task["leak_sites"] == []
    assert task["symptoms"] == []
    assert task["checkouts"] >= 12
    assert task["returns"] == task["checkouts"]
    # AND the mode pins, but a mode never decides the project's verdict or the exit code
    assert results["asyncio-run"]["kind"] == "mode"
    assert results["asyncio-run"]["verdict"] == "pinned"
    assert report["verdict"] == "clean"
    assert report["headline"].startswith("Clean: mysite.tasks.count_databases")
    assert code == 0


def test_an_async_function_runs_through_each_wrapper(database_url: str) -> None:
    # GIVEN an async helper that nothing wraps, and the project's wrapper
    wrapper = "mysite.celeryapp:async_task_wrapper"
    code, report = check_json(
        *SETTINGS, "--task", "mysite.tasks.database_names", "--wrapper", wrapper,
        cwd=LEAKY, database_url=database_url,
    )  # fmt: skip
    # THEN the wrapper runs the probe, and the helper runs through the wrapper
    results = by_subject(report)
    name = f"mysite.tasks.database_names via {wrapper}"
    assert list(results) == [wrapper, name]
    assert results[wrapper]["kind"] == "wrapper"
    task = results[name]
    assert task["kind"] == "task"
    assert task["verdict"] == "leak"
    assert task["evidence"]["celery_task"] is False
    [site] = task["leak_sites"]
    assert (site["file"], site["line"], site["function"]) == (
        TASKS_FILE,
        task_line(LEAKY, "database_names", "async for database in"),
        "database_names",
    )
    assert code == 1


def test_a_plain_sync_function_is_called_with_its_arguments(database_url: str) -> None:
    # GIVEN a plain function that runs its async code with asyncio.run and no cleanup
    args = ("--settings", "extras.settings", "--task", "extras.tasks.nightly_report",
            "--args", "[7]")  # fmt: skip
    code, report = check_json(*args, cwd=EXTRAS, database_url=database_url, env={"POOL": "1"})
    # THEN every run succeeded (so the argument arrived) and the connection stays pinned on
    # asgiref's process-wide thread, at the project's query
    [result] = report["results"]
    assert result["kind"] == "task"
    assert result["verdict"] == "pinned"
    assert result["failed_tasks"] == 0
    assert result["evidence"]["celery_task"] is False
    [site] = result["leak_sites"]
    assert site["kind"] == "pinned"
    assert (site["file"], site["line"], site["function"]) == (
        "extras/tasks.py",
        task_line(EXTRAS, "_count_databases", "connection.cursor()", "extras/tasks.py"),
        "_count_databases",
    )
    assert site["thread"] == "process-wide sync_to_async executor"
    # AND a pinned task passes the default --fail-on leak, and fails --fail-on pinned
    assert code == 0
    code, _ = check_json(
        *args, "--fail-on", "pinned", cwd=EXTRAS, database_url=database_url, env={"POOL": "1"}
    )
    assert code == 1


def test_an_async_celery_task_runs_when_its_base_class_awaits_it(database_url: str) -> None:
    # GIVEN a Celery task on an async def whose base class runs it with asyncio.run (only a task
    # that nothing awaits is refused)
    code, report = check_json(
        "--settings", "extras.settings", "--task", "extras.tasks.looped_report", "--args", "[7]",
        cwd=EXTRAS, database_url=database_url, env={"POOL": "1"},
    )  # fmt: skip
    # THEN it ran every time through Celery's tracer, and pins like any bare asyncio.run
    [result] = report["results"]
    assert result["evidence"]["celery_task"] is True
    assert result["failed_tasks"] == 0
    assert result["verdict"] == "pinned"
    assert [s["function"] for s in result["leak_sites"]] == ["_count_databases"]
    assert code == 0


# -- writing tasks ---------------------------------------------------------------------------


def _with_password(url: str, password: str) -> tuple[str, str]:
    """The URL with a password (trust authentication ignores it), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or "postgres"
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl(), password


@pytest.fixture
def migrated_database(database_url: str) -> Iterator[str]:
    """A scratch database on the real server with the fixture's migrations applied (by Django's
    own migrate, run here, not by pooldoctor: pooldoctor never migrates a database of yours)."""
    with scratch_database(database_url, "pooldoctor_task") as url:
        script = (
            "import os, sys; sys.path.insert(0, os.getcwd()); "
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'; "
            "from django.conf import settings; "
            "from pooldoctor.core.project import parse_database_url; "
            "settings.DATABASES['default'].update(parse_database_url(sys.argv[1])); "
            "import django; django.setup(); "
            "from django.core.management import call_command; "
            "call_command('migrate', verbosity=0)"
        )
        subprocess.run([sys.executable, "-c", script, url], cwd=FIXED, check=True, timeout=60)
        yield url


def _written(url: str) -> tuple[int, Decimal]:
    """Price changes recorded, and product 42's price, in that database."""
    with psycopg.connect(url) as conn:
        changes = conn.execute("SELECT count(*) FROM prices_pricechange").fetchone()
        price = conn.execute("SELECT price FROM prices_product WHERE id = 42").fetchone()
    assert changes is not None and price is not None
    return changes[0], price[0]


def test_a_writing_task_fails_read_only_on_your_database_with_the_way_out(
    migrated_database: str,
) -> None:
    # GIVEN a task that writes, and a database of the user's with the task's tables
    url, password = _with_password(migrated_database, "pooldoctor-unused-pw")
    # WHEN pooldoctor runs it there
    proc = pooldoctor(
        "check", *SETTINGS, "--task", "mysite.tasks.record_price", "--args", "[42]",
        "--database", url, "--format", "json", cwd=FIXED,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    # THEN every run fails on PostgreSQL's read-only session, and nothing was written
    [result] = report["results"]
    assert result["verdict"] == "error"
    assert result["tasks"] == result["failed_tasks"] == 12
    assert result["summary"].startswith("no run of the task succeeded: 12 tasks failed with ")
    refused, hint = result["symptoms"]
    assert refused.startswith("12 tasks failed with ")
    assert "cannot execute UPDATE in a read-only transaction" in refused
    # (told by its SQLSTATE, not only PostgreSQL's English words)
    assert {c["sqlstate"] for c in result["evidence"]["census"]} == {"25006"}
    assert _written(migrated_database) == (0, Decimal("229.00"))
    # AND the report says the task writes and how to let it, naming the database without its
    # password
    dsn = report["database"]["dsn"]
    assert dsn.replace(":***@", "@") == migrated_database
    assert hint == (
        "the task writes; rerun with --database embedded "
        f"(or --allow-writes to let it write to {migrated_database})"
    )
    [pd206] = [f for f in report["findings"] if f["code"] == "PD206"]
    assert pd206["severity"] == "error"
    assert pd206["subject"] == "mysite.tasks.record_price"
    assert pd206["message"].startswith("mysite.tasks.record_price: the task writes, and 12 of 12")
    assert f"--allow-writes to let it write to {migrated_database}" in pd206["fix"]
    assert password not in proc.stdout + proc.stderr
    assert proc.returncode == 1


def test_allow_writes_lets_the_task_write_to_your_database(migrated_database: str) -> None:
    # GIVEN the same writing task and database, WHEN the user opts in to writes
    code, report = check_json(
        *SETTINGS, "--task", "mysite.tasks.record_price", "--args", "[42]", "--allow-writes",
        cwd=FIXED, database_url=migrated_database,
    )  # fmt: skip
    # THEN every run wrote: twelve price changes, the price raised by 1 % twelve times
    [result] = report["results"]
    assert result["verdict"] == "clean"
    assert result["failed_tasks"] == 0
    assert result["symptoms"] == []
    assert "PD206" not in {f["code"] for f in report["findings"]}
    price = Decimal("229.00")
    for _ in range(12):
        price = (price * Decimal("1.01")).quantize(Decimal("0.01"))
    assert _written(migrated_database) == (12, price)
    assert code == 0


def test_embedded_database_is_migrated_and_the_task_writes_there() -> None:
    before = set(Path(tempfile.gettempdir()).glob("pooldoctor-pg-*"))
    # GIVEN a task that reads product 42 (created by a data migration) and one that writes
    code, report = check_json(
        *SETTINGS, "--task", "mysite.tasks.refresh_prices", "--task", "mysite.tasks.record_price",
        "--args", "[42]", cwd=FIXED, database_url="embedded",
    )  # fmt: skip
    # THEN both ran every time: the tables and rows exist, and the session could write
    assert report["database"]["source"] == "embedded"
    results = by_subject(report)
    assert list(results) == ["mysite.tasks.refresh_prices", "mysite.tasks.record_price"]
    for result in results.values():
        assert result["kind"] == "task"
        assert result["verdict"] == "clean"
        assert result["tasks"] == 12
        assert result["failed_tasks"] == 0
        assert result["symptoms"] == []
        assert result["leak_sites"] == []
    assert "PD206" not in {f["code"] for f in report["findings"]}
    assert code == 0
    # AND the migrated server is gone with its data
    assert set(Path(tempfile.gettempdir()).glob("pooldoctor-pg-*")) == before


def test_embedded_leak_names_the_model_task_line() -> None:
    code, report = check_json(
        *SETTINGS, "--task", "mysite.tasks.refresh_prices", "--args", "[42]",
        cwd=LEAKY, database_url="embedded",
    )  # fmt: skip
    [result] = report["results"]
    assert result["verdict"] == "leak"
    [site] = result["leak_sites"]
    assert (site["file"], site["line"], site["function"]) == (
        TASKS_FILE,
        task_line(LEAKY, "refresh_prices", "await Product.objects.aget("),
        "refresh_prices",
    )
    assert code == 1


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--task", "mysite..tasks"), ["'mysite..tasks' is not a dotted path to a task"]),
        (("--task", "mysite.nope.task"), ["no module named 'mysite.nope'"]),
        (("--task", "mysite.tasks.refresh_price"),
         ["has no attribute 'refresh_price'", "did you mean 'refresh_prices'"]),
        (("--task", "mysite.settings.SECRET_KEY"), ["is a str, not a task or a function"]),
        (("--task", "mysite.tasks.Decimal"), ["is a class, not a task or a function"]),
        (("--task", "mysite.tasks.database_names"),
         ["is an async function that nothing wraps", "or add --wrapper MODULE:ATTR"]),
        (("--task", "mysite.tasks.refresh_prices"),
         ["mysite.tasks.refresh_prices(product_id) cannot be called with --args '[]'",
          "missing a required argument: 'product_id'"]),
        (("--task", "mysite.tasks.count_databases", "--kwargs", '{"force": true}'),
         ["got an unexpected keyword argument 'force'"]),
        (("--task", "mysite.tasks.count_databases", "--args", '{"a": 1}'),
         ["--args must be a JSON list, not an object"]),
        (("--task", "mysite.tasks.count_databases", "--args", "[1"), ["--args '[1' is not JSON"]),
        (("--task", "mysite.tasks.count_databases", "--kwargs", "[1]"),
         ["--kwargs must be a JSON object, not a list"]),
        (("--args", "[42]",), ["no --task was given"]),
    ],
    ids=["syntax", "no-module", "typo", "not-callable", "class", "bare-async", "missing-arg",
         "unexpected-kwarg", "args-object", "args-not-json", "kwargs-list", "args-alone"],
)  # fmt: skip
def test_bad_task_input_is_one_usage_line(
    args: tuple[str, ...], expected: list[str], database_url: str
) -> None:
    proc = pooldoctor("check", *SETTINGS, *args, "--database", database_url, cwd=LEAKY)
    line = one_error_line(proc)
    for text in expected:
        assert text in line


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("extras.tasks.never_awaited", "is a Celery task on an async def: Celery never awaits"),
        ("extras.import_error.wrap",
         "importing 'extras.import_error' raised ModuleNotFoundError: No module named "
         "'a_module_that_does_not_exist'"),
        ("extras.tasks.not_a_task", "is a int, not a task or a function"),
    ],
)  # fmt: skip
def test_tasks_that_cannot_run_are_refused_before_measuring(
    task: str, expected: str, database_url: str
) -> None:
    proc = pooldoctor(
        "check", "--settings", "extras.settings", "--task", task, "--database", database_url,
        cwd=EXTRAS,
    )  # fmt: skip
    assert expected in one_error_line(proc)


def test_help_says_task_runs_the_projects_code() -> None:
    proc = pooldoctor("check", "--help", cwd=LEAKY)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "RUNS THE PROJECT'S CODE FOR REAL" in text
    assert "--allow-writes" in text
    assert "cannot be kept in one transaction and rolled back" in text
