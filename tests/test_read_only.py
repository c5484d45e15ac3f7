"""Nothing written without ``--allow-writes``, on any alias the project uses.

GIVEN a project with a second PostgreSQL alias on the same database and an SQLite alias, and tasks
that write each another way, WHEN ``check --task`` runs them against a scratch database, THEN
the table the tasks write to is still empty (counted over a connection of the test's own), the
task is reported (PD206) with the statement and the project's line, and connections the task
opened outside Django are reported (PD208). Before this guard, the first two tasks wrote 3 rows
each and were judged clean.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECTS, check_json, pooldoctor, scratch_database

from pooldoctor.core import readonly

EXTRAS = PROJECTS / "extras"
WRITES = "extras/writes.py"


@pytest.fixture
def scratch(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pd_readonly") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE pooldoctor_guard (id serial, note text)")
        yield url


def run(task: str, url: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    env = {"REPORTING_URL": url, "LOCAL_SQLITE": str(tmp_path / "local.sqlite3")}
    return check_json(
        "--settings", "extras.settings_reporting", "--task", f"extras.writes.{task}",
        "--tasks", "3", *extra, cwd=EXTRAS, database_url=url, env=env,
    )  # fmt: skip


def rows(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM pooldoctor_guard").fetchall()]


def line_of(text: str) -> int:
    lines = (EXTRAS / WRITES).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def finding(report: dict[str, Any], code: str) -> dict[str, Any]:
    found = [f for f in report["findings"] if f["code"] == code]
    assert len(found) == 1, report["findings"]
    return found[0]


@pytest.mark.parametrize(
    ("task", "statement", "alias", "by"),
    [
        ("through_reporting", "INSERT INTO pooldoctor_guard (note) VALUES ('reporting')",
         "reporting", "the server refused"),
        ("lifted_in_atomic", "SET TRANSACTION READ WRITE", "default", "pooldoctor refused"),
        ("lifted_for_the_session", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
         "default", "pooldoctor refused"),
        ("to_sqlite", "CREATE TABLE IF NOT EXISTS written (note text)", "local",
         "pooldoctor refused"),
    ],
)  # fmt: skip
def test_a_write_on_any_alias_is_refused_and_named_at_its_line(
    task: str, statement: str, alias: str, by: str, scratch: str, tmp_path: Path
) -> None:
    code, report = run(task, scratch, tmp_path)
    assert rows(scratch) == []
    if alias == "local":  # the SQLite file holds no table either
        with contextlib.closing(sqlite3.connect(tmp_path / "local.sqlite3")) as local:
            assert local.execute("SELECT name FROM sqlite_master").fetchall() == []
    (result,) = report["results"]
    assert result["verdict"] == "error", result["summary"]
    assert code == 1
    message = finding(report, "PD206")["message"]
    assert f"task 1 ran {statement!r} on alias {alias!r}" in message
    assert f"at {WRITES}:{line_of(statement)} in {task}()" in message
    assert f"({by} it)" in message
    refused = result["evidence"]["census"][0]["refused"]
    assert [(r["alias"], r["file"], r["line"]) for r in refused] == [
        (alias, WRITES, line_of(statement))
    ]


def test_a_task_that_swallows_the_refusal_is_still_reported(scratch: str, tmp_path: Path) -> None:
    # GIVEN a task that catches the DatabaseError and carries on
    _, report = run("swallowed", scratch, tmp_path)
    assert rows(scratch) == []
    (result,) = report["results"]
    assert result["failed_tasks"] == 0
    assert "3 of 3 tasks had a statement refused" in finding(report, "PD206")["message"]


def test_a_connection_opened_outside_django_starts_read_only_and_is_reported(
    scratch: str, tmp_path: Path
) -> None:
    _, report = run("direct", scratch, tmp_path)
    assert rows(scratch) == []
    pd208 = finding(report, "PD208")
    assert pd208["severity"] == "warning"
    opened = line_of("with psycopg.connect(autocommit=True, **params) as conn:")
    assert f"first at {WRITES}:{opened} in direct()" in pd208["message"]
    assert "started read-only" in pd208["message"]


def test_a_read_write_connection_of_the_projects_own_is_an_error_seen_by_the_server(
    scratch: str, tmp_path: Path
) -> None:
    _, report = run("direct_kept_read_write", scratch, tmp_path)
    (result,) = report["results"]
    # The server's own view: the connection is in pg_stat_activity, tagged by PGAPPNAME.
    assert [c["server"]["direct"] for c in result["evidence"]["census"]] == [1, 1, 1]
    pd208 = finding(report, "PD208")
    assert pd208["severity"] == "error"
    assert "1 of them started read-write" in pd208["message"]


def test_allow_writes_lets_every_alias_write(scratch: str, tmp_path: Path) -> None:
    _, report = run("through_reporting", scratch, tmp_path, "--allow-writes")
    assert rows(scratch) == ["reporting"] * 3
    assert not [f for f in report["findings"] if f["code"] == "PD206"]


@pytest.mark.parametrize(
    "sql",
    [
        "SET TRANSACTION READ WRITE",
        "set transaction isolation level serializable, read write",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "set local transaction_read_only to off",
        'SET SESSION "default_transaction_read_only" TO DEFAULT',
        "RESET ALL",
        "reset default_transaction_read_only",
        "DISCARD ALL",
        "BEGIN READ WRITE",
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED READ WRITE",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT pg_catalog.set_config( 'transaction_read_only', 'off', true)",
        "ALTER ROLE app SET default_transaction_read_only = off",
        "SET/**/TRANSACTION -- a comment\n READ WRITE",
    ],
)
def test_statements_that_lift_read_only_are_recognised(sql: str) -> None:
    assert readonly.lifts_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SET TRANSACTION READ ONLY",
        "SET TIME ZONE 'UTC'",
        "SELECT current_setting('default_transaction_read_only')",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
    ],
)
def test_ordinary_statements_are_not(sql: str) -> None:
    assert not readonly.lifts_read_only(sql)


def test_on_other_engines_only_reads_pass() -> None:
    assert readonly.is_read("SELECT * FROM t")
    assert readonly.is_read("  /* x */ WITH a AS (SELECT 1) SELECT * FROM a")
    assert readonly.is_read('SAVEPOINT "s1"')
    assert not readonly.is_read("WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a")
    assert not readonly.is_read("INSERT INTO t VALUES (1)")
    assert not readonly.is_read("PRAGMA user_version = 3")


def test_simulate_refuses_writes_in_the_workers_and_names_the_line(
    scratch: str, tmp_path: Path
) -> None:
    # GIVEN the task that turns its transaction read-write, WHEN real Celery workers run it
    env = {"REPORTING_URL": scratch}
    proc = pooldoctor(
        "simulate", "--settings", "extras.settings_reporting", "--task",
        "extras.writes.lifted_in_atomic", "--tasks", "2", "--workers", "1",
        "--database", scratch, "--format", "json", cwd=EXTRAS, env=env, timeout=180,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    # THEN nothing was written, and PD206 names the statement and the line
    assert rows(scratch) == []
    message = finding(report, "PD206")["message"]
    assert "ran 'SET TRANSACTION READ WRITE' on alias 'default'" in message
    assert f"at {WRITES}:{line_of('SET TRANSACTION READ WRITE')} in lifted_in_atomic()" in message
    assert proc.returncode == 1
