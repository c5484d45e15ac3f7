"""The check command end to end: real CLI process, real PostgreSQL, the fixture projects."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import FIXTURES, PROJECTS, by_subject, check_json, pooldoctor

from pooldoctor.core.probes import all_modes

LEAKY = FIXTURES / "leaky"
FIXED = FIXTURES / "fixed"
RECIPE = "mysite.celeryapp:async_task_wrapper"
RECIPE_TASK = "mysite.celeryapp:async_task()"


def test_the_leaking_recipe_is_caught_as_plain_wrapper_and_as_celery_task(
    database_url: str,
) -> None:
    # GIVEN the fixture whose wrapper is the blog recipe (pool max_size 4, timeout 30 s)
    # WHEN pooldoctor checks it, as a decorator and through the recipe's Celery task decorator
    code, report = check_json(
        "--settings",
        "mysite.settings",
        "--wrapper",
        RECIPE,
        "--wrapper",
        RECIPE_TASK,
        cwd=LEAKY,
        database_url=database_url,
    )
    # THEN both leak, one slot per task, and the pool runs dry after max_size tasks
    assert code == 1
    assert report["schema"] == 1
    assert report["verdict"] == "leak"
    results = by_subject(report)
    for name in (RECIPE, RECIPE_TASK):
        result = results[name]
        assert result["kind"] == "wrapper"
        assert result["verdict"] == "leak"
        assert result["lost_per_task"] == 1.0
        assert result["tasks_until_exhaustion"] == 4
        assert result["stop"] == "exhausted"
    assert results[RECIPE_TASK]["evidence"]["celery_task"] is True
    assert results[RECIPE]["evidence"]["celery_task"] is False
    # AND the fix offered is one that measured clean in this very run
    assert report["fix"]["subject"] in {r for r, v in results.items() if v["verdict"] == "clean"}
    assert {"PD201", "PD103"} <= {f["code"] for f in report["findings"]}


def test_the_fixed_wrapper_measures_clean(database_url: str) -> None:
    code, report = check_json(
        "--settings",
        "mysite.settings",
        "--wrapper",
        "mysite.celeryapp:async_task_wrapper",
        "--wrapper",
        "mysite.celeryapp:async_task()",
        "--modes",
        "asyncio-run",
        cwd=FIXED,
        database_url=database_url,
    )
    assert code == 0, report
    assert report["verdict"] == "clean"
    for result in report["results"]:
        if result["kind"] == "wrapper":
            assert result["verdict"] == "clean"
            assert result["tasks"] == 12
            assert result["failed_tasks"] == 3  # the probe's own failures, cleaned up too
            assert result["lost_slots"] == 0
            assert result["held_connections"] == 0


def test_wrapper_that_pins_fails_only_with_fail_on_pinned(database_url: str) -> None:
    args = (
        "--settings",
        "extras.settings",
        "--wrapper",
        "extras.wrappers:factory()",
        "--modes",
        "async-to-sync",
    )
    code, report = check_json(*args, cwd=PROJECTS / "extras", database_url=database_url)
    assert by_subject(report)["extras.wrappers:factory()"]["verdict"] == "pinned"
    assert code == 0
    code, _ = check_json(
        *args, "--fail-on", "pinned", cwd=PROJECTS / "extras", database_url=database_url
    )
    assert code == 1


def test_poisoned_connection_is_reported(database_url: str) -> None:
    _, report = check_json(
        "--settings",
        "mysite.settings",
        "--modes",
        "asyncio-run",
        cwd=LEAKY,
        database_url=database_url,
    )
    poisoned = [f for f in report["findings"] if f["code"] == "PD203"]
    assert [f["subject"] for f in poisoned] == ["asyncio-run"]
    last = report["results"][0]["evidence"]["census"][-1]
    assert last["server"]["idle_in_transaction"] == 1
    assert report["verdict"] == "unmeasured"  # no wrapper: nothing of the project's was measured
    assert any(f["code"] == "PD204" for f in report["findings"])


def test_junit_output_inferred_from_extension(tmp_path: Path, database_url: str) -> None:
    out = tmp_path / "pooldoctor.xml"
    proc = pooldoctor(
        "check",
        "--settings",
        "mysite.settings",
        "--wrapper",
        RECIPE,
        "--modes",
        "async-to-sync",
        "--database",
        database_url,
        "-o",
        str(out),
        cwd=LEAKY,
    )
    assert proc.returncode == 1, proc.stderr
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"project verdict", "async-to-sync", RECIPE}
    assert cases["project verdict"].find("failure") is not None  # the exit code's rule
    assert cases[RECIPE].find("failure") is not None
    assert cases["async-to-sync"].find("failure") is None


def test_text_report_names_verdicts_and_fix(database_url: str) -> None:
    proc = pooldoctor(
        "check",
        "--settings",
        "mysite.settings",
        "--wrapper",
        RECIPE,
        "--modes",
        "thread-sensitive-context-closed",
        "--database",
        database_url,
        cwd=LEAKY,
    )
    assert proc.returncode == 1
    assert "LEAK" in proc.stdout
    assert RECIPE in proc.stdout
    assert "sync_to_async(close_old_connections)" in proc.stdout  # the measured fix, as code


def test_reads_only_nothing_is_written(database_url: str) -> None:
    # GIVEN a wrapper that tries CREATE TABLE before every task
    code, report = check_json(
        "--settings",
        "extras.settings",
        "--wrapper",
        "extras.wrappers:writer",
        "--modes",
        "async-to-sync",
        cwd=PROJECTS / "extras",
        database_url=database_url,
    )
    # THEN every task fails on the read-only session and no table exists
    result = by_subject(report)["extras.wrappers:writer"]
    assert result["failed_tasks"] == result["tasks"]
    assert any("read-only transaction" in s for s in result["symptoms"])
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT to_regclass('pooldoctor_must_not_exist')").fetchone()
    assert row == (None,)
    assert code == 1


def test_hanging_wrapper_is_an_error_within_the_task_limit(database_url: str) -> None:
    code, report = check_json(
        "--settings",
        "extras.settings",
        "--wrapper",
        "extras.wrappers:hangs",
        "--modes",
        "async-to-sync",
        "--task-timeout",
        "1",
        cwd=PROJECTS / "extras",
        database_url=database_url,
    )
    result = by_subject(report)["extras.wrappers:hangs"]
    assert result["verdict"] == "error"
    assert result["stop"] == "hung"
    assert "did not finish within 1 s" in result["stop_detail"]
    assert code == 1


def test_wrappers_from_pyproject(tmp_path: Path, database_url: str) -> None:
    project = tmp_path / "proj"
    subprocess.run(["cp", "-r", str(LEAKY), str(project)], check=True)
    (project / "pyproject.toml").write_text(f'[tool.pooldoctor]\nwrappers = ["{RECIPE}"]\n')
    _, report = check_json(
        "--settings",
        "mysite.settings",
        "--modes",
        "async-to-sync",
        cwd=project,
        database_url=database_url,
    )
    assert [r["subject"] for r in report["results"]] == ["async-to-sync", RECIPE]


def test_list_modes_lists_every_registered_mode() -> None:
    proc = pooldoctor("check", "--list-modes", cwd=LEAKY)
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    assert listed == [m.name for m in all_modes()]
    assert len(listed) == 13  # 8 task modes, then the 5 request modes
    assert listed[8:] == ["sync-view", "async-view", "thread-insensitive-view",
                          "async-streaming-view", "sync-streaming-view"]  # fmt: skip


@pytest.mark.parametrize(
    "entry",
    [[str(Path(sys.executable).parent / "pooldoctor")], [sys.executable, "-m", "pooldoctor"]],
)
def test_both_entry_points_report_the_version(entry: list[str]) -> None:
    proc = subprocess.run([*entry, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "pooldoctor, version 0.1.0" in proc.stdout


def test_demo_shows_the_recipe_leaking_and_exits_zero(database_url: str) -> None:
    proc = pooldoctor("demo", "--database", database_url, "--format", "json", cwd=Path("/"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "leak"
    assert by_subject(report)["mysite.celeryapp:async_task()"]["evidence"]["celery_task"] is True
