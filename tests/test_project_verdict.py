"""check's verdict is about the project: ``unmeasured`` when nothing of its own ran, ``error``
when its wrapper never ran the task, and the gate (exit code, JUnit, GitHub) follows that verdict.
Every run is the real CLI against the real PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from conftest import PROJECTS, by_subject, check_json, pooldoctor

EXTRAS = PROJECTS / "extras"
SETTINGS = ("--settings", "extras.settings", "--tasks", "6")


def test_built_in_modes_alone_are_unmeasured_not_clean(database_url: str) -> None:
    # GIVEN only built-in modes (no --wrapper, no --task), two of them clean
    code, report = check_json(*SETTINGS, "--modes", "async-to-sync,thread-sensitive-context-closed",
                              cwd=EXTRAS, database_url=database_url)  # fmt: skip
    assert {r["verdict"] for r in report["results"]} == {"clean"}
    # THEN the project's verdict is unmeasured, never clean, and the default gate passes it
    assert report["verdict"] == "unmeasured", report["headline"]
    assert report["headline"].startswith("UNMEASURED: nothing of the project's own ran")
    assert code == 0


def test_fail_on_unmeasured_fails_it_in_the_exit_code_and_junit(database_url: str) -> None:
    proc = pooldoctor("check", *SETTINGS, "--modes", "async-to-sync", "--database", database_url,
                      "--format", "junit", "--fail-on", "unmeasured", cwd=EXTRAS)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    suite = ET.fromstring(proc.stdout).find("testsuite")
    assert suite is not None
    project = suite.find("testcase[@classname='pooldoctor.project']")
    assert project is not None
    failure = project.find("failure")
    assert failure is not None and failure.get("type") == "unmeasured"
    assert suite.get("failures") == "1"


def test_github_headline_is_an_error_when_the_project_fails(database_url: str) -> None:
    proc = pooldoctor("check", *SETTINGS, "--modes", "async-to-sync", "--database", database_url,
                      "--format", "github", "--fail-on", "unmeasured", cwd=EXTRAS)  # fmt: skip
    first = proc.stdout.splitlines()[0]
    assert first.startswith("::error title=pooldoctor check%3A unmeasured::UNMEASURED"), first
    proc = pooldoctor("check", *SETTINGS, "--modes", "async-to-sync", "--database", database_url,
                      "--format", "github", cwd=EXTRAS)  # fmt: skip
    assert proc.stdout.startswith("::notice title=pooldoctor check%3A unmeasured::"), proc.stdout


@pytest.mark.parametrize(
    ("wrapper", "reason"),
    [
        ("extras.never_runs:returns_the_coroutine",
         "the wrapper returned a coroutine that was never awaited: its code never ran"),
        ("extras.never_runs:never_calls", "the wrapper never ran the task: in 6 tasks it made no "
         "query and none of the failures the task raises on schedule came back"),
        ("extras.never_runs:celery_task_on_async_def",
         "the wrapper returned a coroutine that was never awaited: its code never ran"),
    ],
)  # fmt: skip
def test_a_wrapper_that_never_runs_the_task_is_an_error(
    database_url: str, wrapper: str, reason: str
) -> None:
    # GIVEN a wrapper that takes the task and runs none of its code
    code, report = check_json(*SETTINGS, "--modes", "async-to-sync", "--wrapper", wrapper,
                              cwd=EXTRAS, database_url=database_url)  # fmt: skip
    result = by_subject(report)[wrapper]
    # THEN it is an error with the reason in words (no checkout at all), never clean, exit 1
    assert result["checkouts"] == 0
    assert result["verdict"] == "error", result["summary"]
    assert result["summary"].startswith(reason), result["summary"]
    assert report["verdict"] == "error"
    assert code == 1


def test_sync_orm_runs_in_process_only_when_named(database_url: str) -> None:
    # GIVEN check without --modes: sync-orm is a worker-only mode, so it is not among the subjects
    _, report = check_json(*SETTINGS, "--wrapper", "extras.never_runs:never_calls",
                              cwd=EXTRAS, database_url=database_url)  # fmt: skip
    assert "sync-orm" not in by_subject(report)
    # WHEN it is named, it runs the probe as plain sync ORM code: the connection stays on the
    #   calling thread between tasks, since nothing closes it outside a worker
    _, report = check_json(*SETTINGS, "--modes", "sync-orm", cwd=EXTRAS,
                              database_url=database_url)  # fmt: skip
    sync = by_subject(report)["sync-orm"]
    assert sync["checkouts"] > 0
    assert sync["verdict"] == "pinned", sync["summary"]
    assert "MainThread" in sync["summary"]
