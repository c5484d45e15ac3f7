"""Leak sites end to end: the real CLI, the real PostgreSQL, the fixture projects.

A leak site must point at the line that checked the connection out: for the probe task that is
the first async ORM call in ``pooldoctor/core/probes/task.py``, found here by reading the file,
so the
test does not depend on line numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, by_subject, check_json, pooldoctor

from pooldoctor.core.probes import task as probe_module

LEAKY = FIXTURES / "leaky"
RECIPE = "mysite.celeryapp:async_task_wrapper"
PROBE_FILE = "pooldoctor/core/probes/task.py"
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


@pytest.fixture(scope="module")
def leaky_report(database_url: str) -> dict[str, Any]:
    code, report = check_json(*SUBJECTS, cwd=LEAKY, database_url=database_url)
    assert code == 1, report
    return report


def test_the_recipe_names_the_probe_line_on_the_context_executor(
    leaky_report: dict[str, Any],
) -> None:
    result = by_subject(leaky_report)[RECIPE]
    # THEN one site: every lost slot was taken by the probe's first query on a
    # ThreadSensitiveContext executor thread that ended with the task
    assert result["verdict"] == "leak"
    [site] = result["leak_sites"]
    assert site["kind"] == "lost"
    assert (site["file"], site["line"], site["function"]) == (
        PROBE_FILE,
        FIRST_QUERY,
        "probe_task",
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
    # AND the stack, innermost first, goes from the probe through the recipe's own frames
    named = [(e["file"], e["function"]) for e in site["stack"] if e["file"]]
    assert named[0] == (PROBE_FILE, "probe_task")
    assert ("mysite/celeryapp.py", "wrapped_with_context") in named
    assert ("mysite/celeryapp.py", "sync_wrapper") in named
    folded = [e for e in site["stack"] if not e["file"]]
    assert any("django" in e["folded"] for e in folded)
    # AND nothing was returned: every checkout was lost
    assert result["checkouts"] == 4
    assert result["returns"] == 0


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
        f"LOST    {PROBE_FILE}:{FIRST_QUERY} in probe_task() via ThreadSensitiveContext executor"
        in proc.stdout
    )
    assert "x4 connections, from task 1 (ok), task 2 (ok)" in proc.stdout
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
        f"(checked out at {PROBE_FILE}:{FIRST_QUERY} in probe_task())"
    )
