"""The fitted fix end to end: the real CLI, the real PostgreSQL, the wrapper fixtures of
``tests/projects/extras/extras/fit_*.py`` and the blog recipe of ``pooldoctor/demo/leaky``.

Each patchable wrapper is rewritten, measured patched in the same run, and proven clean; the
project's files stay as they were, and the proof run changes neither the results nor the verdict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, PROJECTS, by_subject, check_json, pooldoctor

EXTRAS = PROJECTS / "extras"
ASYNCIO_RUN = "extras.fit_asyncio_run:celery_async"
ASYNC_TO_SYNC = "extras.fit_async_to_sync:async_to_sync_task"
WRONG_THREAD = "extras.fit_try_finally:run_async_task"
AS_OBJECT = "extras.fit_unpatchable:async_task"
AS_LAMBDA = "extras.fit_unpatchable:as_lambda"
STILL_LEAKS = "extras.fit_still_leaks:audited"
WRAPPERS = (ASYNCIO_RUN, ASYNC_TO_SYNC, WRONG_THREAD, AS_OBJECT, AS_LAMBDA, STILL_LEAKS)
MODES = "async-to-sync,thread-sensitive-context-closed"


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.py"))
    }


@pytest.fixture(scope="module")
def run(database_url: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    before = digest(EXTRAS)
    args = [a for w in WRAPPERS for a in ("--wrapper", w)]
    code, report = check_json(
        "--settings",
        "extras.settings",
        *args,
        "--modes",
        MODES,
        cwd=EXTRAS,
        database_url=database_url,
        env={"POOL": "1"},
    )
    assert before == digest(EXTRAS), "the project's files changed"
    return code, report, before


def fix_of(report: dict[str, Any], wrapper: str) -> dict[str, Any]:
    fix = by_subject(report)[wrapper]["fix"]
    assert fix is not None, wrapper
    return fix


def diff_lines(fix: dict[str, Any]) -> list[str]:
    return [line for line in fix["diff"].splitlines() if line[:1] in "+-"]


def test_asyncio_run_is_rewritten_and_measured_clean(run: tuple[int, dict[str, Any], Any]) -> None:
    _, report, _ = run
    assert by_subject(report)[ASYNCIO_RUN]["verdict"] == "pinned"
    fix = fix_of(report, ASYNCIO_RUN)
    assert (fix["subject"], fix["applied_to"], fix["measured"]) == (
        "async-to-sync",
        ASYNCIO_RUN,
        "clean",
    )
    assert diff_lines(fix) == [
        "--- a/extras/fit_asyncio_run.py",
        "+++ b/extras/fit_asyncio_run.py",
        "+from asgiref.sync import async_to_sync",
        "+from django.db import close_old_connections",
        "+",
        "-        return asyncio.run(func(*args, **kwargs))",
        "+        try:",
        "+            return async_to_sync(func)(*args, **kwargs)",
        "+        finally:",
        "+            close_old_connections()",
    ]


def test_async_to_sync_without_cleanup_gets_its_finally(
    run: tuple[int, dict[str, Any], Any],
) -> None:
    _, report, _ = run
    fix = fix_of(report, ASYNC_TO_SYNC)
    assert (fix["applied_to"], fix["measured"]) == (ASYNC_TO_SYNC, "clean")
    assert diff_lines(fix) == [
        "--- a/extras/fit_async_to_sync.py",
        "+++ b/extras/fit_async_to_sync.py",
        "+from django.db import close_old_connections",
        "-        return async_to_sync(func)(*args, **kwargs)",
        "+        try:",
        "+            return async_to_sync(func)(*args, **kwargs)",
        "+        finally:",
        "+            close_old_connections()",
    ]


def test_a_close_in_the_wrong_thread_needs_one_line(run: tuple[int, dict[str, Any], Any]) -> None:
    _, report, _ = run
    fix = fix_of(report, WRONG_THREAD)
    assert (fix["applied_to"], fix["measured"]) == (WRONG_THREAD, "clean")
    assert diff_lines(fix) == [
        "--- a/extras/fit_try_finally.py",
        "+++ b/extras/fit_try_finally.py",
        "+from asgiref.sync import async_to_sync",
        "-            return asyncio.run(func(*args, **kwargs))",
        "+            return async_to_sync(func)(*args, **kwargs)",
    ]


@pytest.mark.parametrize(
    ("wrapper", "reason"),
    [
        (AS_OBJECT, "it is a callable object (an instance of AsyncTask), not a function"),
        (AS_LAMBDA, "it is a lambda; pooldoctor rewrites a def"),
    ],
)
def test_an_unpatchable_wrapper_says_why_and_is_not_proven(
    run: tuple[int, dict[str, Any], Any], wrapper: str, reason: str
) -> None:
    _, report, _ = run
    fix = fix_of(report, wrapper)
    assert fix["detail"] == reason
    assert (fix["applied_to"], fix["measured"], fix["diff"]) == (None, None, None)
    assert fix["subject"] == "thread-sensitive-context-closed"
    assert fix["code"] == report["fix"]["code"]


def test_a_patch_that_does_not_fix_it_is_reported_as_measured(
    run: tuple[int, dict[str, Any], Any],
) -> None:
    _, report, _ = run
    assert by_subject(report)[STILL_LEAKS]["verdict"] == "leak"
    fix = fix_of(report, STILL_LEAKS)
    assert (fix["applied_to"], fix["measured"]) == (STILL_LEAKS, "leak")
    assert fix["detail"].startswith("lost ")


def test_the_proof_runs_change_neither_results_nor_verdict(
    run: tuple[int, dict[str, Any], Any],
) -> None:
    code, report, _ = run
    subjects = [r["subject"] for r in report["results"]]
    assert subjects == ["thread-sensitive-context-closed", "async-to-sync", *WRAPPERS]
    assert report["verdict"] == "leak"  # the worst of the project's own wrappers, unpatched
    assert code == 1
    # the built-in modes never got a fitted fix
    assert all(r["fix"] is None for r in report["results"] if r["kind"] == "mode")


def test_the_text_report_says_what_was_measured_on_the_project(
    run: tuple[int, dict[str, Any], Any], tmp_path: Path
) -> None:
    _, report, _ = run
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    text = pooldoctor("report", str(saved), "--format", "text", cwd=EXTRAS).stdout
    assert (
        f"  Fix for {ASYNCIO_RUN}, measured clean here with your wrapper patched "
        "(async-to-sync; diff below):\n--- a/extras/fit_asyncio_run.py\n"
    ) in text
    assert (
        f"  Fix for {STILL_LEAKS} (async-to-sync), patched and measured: still leak (lost "
    ) in text
    assert (
        "  Could not patch it (it is a lambda; pooldoctor rewrites a def): the pattern that "
        "measured clean as built-in mode thread-sensitive-context-closed, not run on your code, "
        "is at the end."
    ) in text
    assert (
        "The pattern that measured clean here as thread-sensitive-context-closed, not run on "
        "your code:"
    ) in text
    assert "Fix that measured clean here" not in text


def test_the_blog_recipe_gets_the_context_closed_on_its_thread(database_url: str) -> None:
    leaky = FIXTURES / "leaky"
    before = digest(leaky)
    code, report = check_json(
        "--settings",
        "mysite.settings",
        "--wrapper",
        "mysite.celeryapp:async_task_wrapper",
        "--wrapper",
        "mysite.celeryapp:async_task()",
        "--modes",
        MODES,
        cwd=leaky,
        database_url=database_url,
    )
    assert digest(leaky) == before
    assert code == 1 and report["verdict"] == "leak"
    expected = [
        "--- a/mysite/celeryapp.py",
        "+++ b/mysite/celeryapp.py",
        "-from asgiref.sync import ThreadSensitiveContext",
        "+from asgiref.sync import ThreadSensitiveContext, sync_to_async",
        "-                return await async_func(*args, **kwargs)",
        "+                try:",
        "+                    return await async_func(*args, **kwargs)",
        "+                finally:",
        "+                    await sync_to_async(close_old_connections)()",
    ]
    # the plain decorator and the Celery task decorator (through its helper) alike
    for wrapper in ("mysite.celeryapp:async_task_wrapper", "mysite.celeryapp:async_task()"):
        assert by_subject(report)[wrapper]["verdict"] == "leak"
        fix = fix_of(report, wrapper)
        assert (fix["subject"], fix["measured"]) == ("thread-sensitive-context-closed", "clean")
        assert diff_lines(fix) == expected
