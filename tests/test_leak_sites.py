"""Leak sites end to end: the real CLI, the real PostgreSQL, the fixture projects.

A leak site must point at the project's line that checked the connection out. Under the project's
wrapper that is the wrapper's own line that ran pooldoctor's probe task (the probe is pooldoctor's
code, folded into the stack, never the site); under a built-in mode, where no project code runs,
the probe's first async ORM call in ``pooldoctor/core/probes/task.py`` stands in (found here by
reading the file, so the test does not depend on its line numbers). The fixtures' lines are exact,
each checked against the text it must be.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, PROJECTS, by_subject, check_json, pooldoctor

from pooldoctor.core.probes import task as probe_module

LEAKY = FIXTURES / "leaky"
EXTRAS = PROJECTS / "extras"
RECIPE = "mysite.celeryapp:async_task_wrapper"
FACTORY = "extras.wrappers:factory()"
PROBE_FILE = "pooldoctor/core/probes/task.py"
RECIPE_FILE = "mysite/celeryapp.py"
RECIPE_AWAIT = 24
"""``return await async_func(*args, **kwargs)`` in the recipe's ``wrapped_with_context``."""
RECIPE_RUN = 29
"""``return asyncio.run(wrapped_with_context())`` in the recipe's ``sync_wrapper``."""
FACTORY_FILE = "extras/wrappers.py"
FACTORY_RUN = 37
"""``return asyncio.run(func(*args))`` in ``factory()``'s ``run``."""
# The recipe wrapper, a mode that pins and a mode that is clean, in one run.
SUBJECTS = (
    "--settings",
    "mysite.settings",
    "--wrapper",
    RECIPE,
    "--modes",
    "asyncio-run,thread-sensitive-context-closed",
)


def probe_line(text: str) -> int:
    """The line of the probe task that contains ``text``."""
    lines = Path(probe_module.__file__).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


FIRST_QUERY = probe_line("count = await model.objects.acount()")


@pytest.mark.parametrize(
    ("path", "line", "text"),
    [
        (LEAKY / RECIPE_FILE, RECIPE_AWAIT, "return await async_func(*args, **kwargs)"),
        (LEAKY / RECIPE_FILE, RECIPE_RUN, "return asyncio.run(wrapped_with_context())"),
        (EXTRAS / FACTORY_FILE, FACTORY_RUN, "return asyncio.run(func(*args))"),
    ],
)
def test_the_fixture_lines_are_where_the_tests_say(path: Path, line: int, text: str) -> None:
    assert path.read_text().splitlines()[line - 1].strip() == text


@pytest.fixture(scope="module")
def leaky_report(database_url: str) -> dict[str, Any]:
    code, report = check_json(*SUBJECTS, cwd=LEAKY, database_url=database_url)
    assert code == 1, report
    return report


def test_the_recipe_names_its_own_line_on_the_context_executor(
    leaky_report: dict[str, Any],
) -> None:
    result = by_subject(leaky_report)[RECIPE]
    # THEN one site: every lost slot was taken by the probe's first query, run by the recipe's
    # own await on a ThreadSensitiveContext executor thread that ended with the task
    assert result["verdict"] == "leak"
    [site] = result["leak_sites"]
    assert site["kind"] == "lost"
    assert (site["file"], site["line"], site["function"]) == (
        RECIPE_FILE,
        RECIPE_AWAIT,
        "wrapped_with_context",
    )
    assert site["thread"] == "ThreadSensitiveContext executor"
    assert site["count"] == result["lost_slots"] == 4
    assert "thread ended" in site["reason"]
    assert "garbage-collected while checked out" in site["reason"]
    assert site["tasks"] == [
        "task 1 (ok)",
        "task 2 (ok)",
        "task 3 (ok)",
        "task 4 (raise-after-query)",
    ]
    # AND the stack, innermost first, goes from Django through the probe (pooldoctor's, folded)
    # to the recipe's own frames, its asyncio.run line among them
    innermost = site["stack"][0]
    assert innermost["file"] is None
    assert innermost["folded"][:3] == ["django", "asgiref", "pooldoctor"]
    named = [(e["file"], e["line"], e["function"]) for e in site["stack"] if e["file"]]
    assert named == [
        (RECIPE_FILE, RECIPE_AWAIT, "wrapped_with_context"),
        (RECIPE_FILE, RECIPE_RUN, "sync_wrapper"),
    ]
    assert not any(e["file"] == PROBE_FILE for e in site["stack"])
    # AND nothing was returned: every checkout was lost
    assert result["checkouts"] == 4
    assert result["returns"] == 0


def test_a_wrapper_running_asyncio_run_is_its_site(database_url: str) -> None:
    # GIVEN a wrapper that runs the task with asyncio.run and closes only its own connection
    code, report = check_json(
        "--settings", "extras.settings", "--wrapper", FACTORY, "--modes", "async-to-sync",
        cwd=EXTRAS, database_url=database_url,
    )  # fmt: skip
    assert code == 0, report
    result = by_subject(report)[FACTORY]
    # THEN the connection pinned on the process-wide executor is placed at the asyncio.run line
    assert result["verdict"] == "pinned"
    [site] = result["leak_sites"]
    assert (site["kind"], site["file"], site["line"], site["function"]) == (
        "pinned", FACTORY_FILE, FACTORY_RUN, "run")  # fmt: skip
    assert site["thread"] == "process-wide sync_to_async executor"
    # AND the probe task the wrapper ran is in the stack, folded as pooldoctor's, inside it
    assert "pooldoctor" in site["stack"][0]["folded"]
    assert site["stack"][1]["file"] == FACTORY_FILE


def test_a_pinning_mode_names_the_process_wide_executor(leaky_report: dict[str, Any]) -> None:
    result = by_subject(leaky_report)["asyncio-run"]
    assert result["verdict"] == "pinned"
    [site] = result["leak_sites"]
    assert site["kind"] == "pinned"
    assert (site["file"], site["line"]) == (PROBE_FILE, FIRST_QUERY)
    assert site["thread"] == "process-wide sync_to_async executor"
    assert site["count"] == result["held_connections"] == 1
    assert "held between tasks by a live thread" in site["reason"]


def test_a_clean_mode_names_no_site(leaky_report: dict[str, Any]) -> None:
    result = by_subject(leaky_report)["thread-sensitive-context-closed"]
    assert result["verdict"] == "clean"
    assert result["leak_sites"] == []
    # every checkout came back to the pool
    assert result["checkouts"] == result["returns"] >= result["tasks"]


def test_site_counts_add_up_to_the_census(leaky_report: dict[str, Any]) -> None:
    # The sites and the verdict's numbers come from the same ledger: they must agree.
    for result in leaky_report["results"]:
        lost = sum(s["count"] for s in result["leak_sites"] if s["kind"] == "lost")
        pinned = sum(s["count"] for s in result["leak_sites"] if s["kind"] == "pinned")
        assert (lost, pinned) == (result["lost_slots"], result["held_connections"]), result


def test_text_report_shows_the_site(database_url: str) -> None:
    proc = pooldoctor(
        "check",
        "--settings",
        "mysite.settings",
        "--wrapper",
        RECIPE,
        "--modes",
        "asyncio-run",
        "--database",
        database_url,
        cwd=LEAKY,
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        f"LOST    {RECIPE_FILE}:{RECIPE_AWAIT} in wrapped_with_context() via "
        "ThreadSensitiveContext executor" in proc.stdout
    )
    # One site for all four lost slots. The whole output goes into the message: a CI run once
    # failed here and pytest's truncated diff hid what it had printed instead.
    counts = [line.strip() for line in proc.stdout.splitlines() if "x4 connections" in line]
    assert len(counts) == 1, proc.stdout
    for task in ("task 1 (ok)", "task 2 (ok)", "task 3 (ok)"):
        assert task in counts[0], proc.stdout
    assert f"PINNED  {PROBE_FILE}:{FIRST_QUERY} in probe_task()" in proc.stdout


def test_without_tracking_the_verdicts_stay_and_sites_are_not_located(
    database_url: str, leaky_report: dict[str, Any]
) -> None:
    code, report = check_json(
        *SUBJECTS,
        "--no-tracking",
        cwd=LEAKY,
        database_url=database_url,
    )
    assert code == 1
    tracked = by_subject(leaky_report)
    for name, result in by_subject(report).items():
        assert result["verdict"] == tracked[name]["verdict"]
        assert result["lost_slots"] == tracked[name]["lost_slots"]
        for site in result["leak_sites"]:
            assert (site["file"], site["line"], site["stack"]) == (None, None, [])
    assert by_subject(report)[RECIPE]["leak_sites"][0]["count"] == 4


def test_the_finding_says_where_the_connections_were_checked_out(
    leaky_report: dict[str, Any],
) -> None:
    [finding] = [f for f in leaky_report["findings"] if f["code"] == "PD201"]
    assert finding["subject"] == RECIPE
    assert finding["message"].endswith(
        f"(checked out at {RECIPE_FILE}:{RECIPE_AWAIT} in wrapped_with_context())"
    )


def test_a_github_annotation_goes_to_the_wrapper_s_line(database_url: str) -> None:
    proc = pooldoctor(
        "check", *SUBJECTS[:4], "--modes", "asyncio-run", "--database", database_url,
        "--format", "github", cwd=LEAKY,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [lost] = [line for line in proc.stdout.splitlines() if "connections lost" in line]
    assert lost.startswith(f"::error file={RECIPE_FILE},line={RECIPE_AWAIT},title=")
    # AND no annotation names a file but the project's (not the probe, which the mode ran)
    assert set(re.findall(r"^::\w+ file=([^,]+),", proc.stdout, re.MULTILINE)) == {RECIPE_FILE}


def test_a_site_outside_the_project_root_is_annotated_without_a_file(database_url: str) -> None:
    # GIVEN the check run from a directory below the one that holds the wrapper's module
    root = LEAKY / "mysite" / "prices"
    proc = pooldoctor(
        "check", "--pythonpath", str(LEAKY), *SUBJECTS[:4], "--modes", "asyncio-run",
        "--database", database_url, "--format", "github", cwd=root,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [lost] = [line for line in proc.stdout.splitlines() if "connections lost" in line]
    # THEN the annotation names no file (GitHub could not place one outside the tree)
    assert lost.startswith("::error title=mysite.celeryapp%3Aasync_task_wrapper%3A 4 connections")
    assert "file=" not in lost
    # AND the message still says where, by its absolute path, the wrapper's own line
    where = LEAKY.resolve() / RECIPE_FILE
    assert f"LOST    {where}:{RECIPE_AWAIT} in wrapped_with_context()" in lost
