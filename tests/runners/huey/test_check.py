"""``pooldoctor check --task`` on Huey tasks: run as a consumer's worker runs them
(``huey.execute``: signals, hooks, djhuey's ``close_db``), in the subject's thread."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import by_subject, check_json

from pooldoctor.hosts.huey import HueyHost

from ..fleets import line_of
from .conftest import HUEYPROJ, SETTINGS

DB_TASK = "hueyproj.tasks.count_databases"
PLAIN_TASK = "hueyproj.tasks.count_databases_plain"
LEAKY_TASK = "hueyproj.tasks.leaky"


@pytest.fixture(scope="module")
def checked(huey_database_url: str) -> dict[str, dict[str, Any]]:
    code, report = check_json(*SETTINGS, "--task", DB_TASK, "--task", PLAIN_TASK, "--task",
                              LEAKY_TASK, "--args", "[1]", "--tasks", "6", cwd=HUEYPROJ,
                              database_url=huey_database_url)  # fmt: skip
    assert code in (0, 1), report
    return by_subject(report)


def test_a_db_task_is_clean_through_djhueys_close_db(checked: dict[str, dict[str, Any]]) -> None:
    result = checked[DB_TASK]
    assert result["verdict"] == "clean"
    assert result["failed_tasks"] == 0 and result["tasks"] >= 6


def test_the_same_body_under_a_plain_task_keeps_its_connection(
    checked: dict[str, dict[str, Any]],
) -> None:
    # What makes the db_task clean is close_db, run by the consumer's path: without it the
    # connection stays checked out by the worker's thread.
    assert checked[PLAIN_TASK]["verdict"] == "pinned"


def test_a_task_on_the_leaking_wrapper_leaks_at_the_projects_line(
    checked: dict[str, dict[str, Any]],
) -> None:
    result = checked[LEAKY_TASK]
    assert result["verdict"] == "leak"
    assert result["lost_slots"] >= 2
    line = line_of(HUEYPROJ / "hueyproj" / "tasks.py", "the line a leak site names")
    assert ("hueyproj/tasks.py", line) in {(s["file"], s["line"]) for s in result["leak_sites"]}


def test_a_db_task_on_an_async_def_is_refused() -> None:
    from huey import MemoryHuey

    huey = MemoryHuey("pooldoctor-tests")

    async def body() -> None:
        return None

    def close_db(*args: Any) -> Any:  # as djhuey's db_task wraps it: a sync function
        return body(*args)

    task = huey.task()(close_db)
    host = HueyHost()
    assert host.owns(task) and not host.owns(close_db)
    assert host.refusal(task) is None  # a sync function: Huey runs it
    task.call_local = body  # what db_task keeps: the project's own function
    assert host.signature_target(task) is body
    assert "never runs" in str(host.refusal(task))
