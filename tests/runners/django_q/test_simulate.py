"""``pooldoctor simulate --runner django-q``: django-q's real ``qcluster`` (a sentinel forking
the workers), real PostgreSQL, Redis DB 6, one run per fixture shared by the module."""

from __future__ import annotations

import pytest

from ..fleets import Run, line_of
from .conftest import DJANGOQPROJ, simulate

TASK = "djangoqproj.tasks.count_databases"
WRAPPER = "djangoqproj.wrappers:async_task_wrapper"


@pytest.fixture(scope="module")
def default(django_q_database_url: str, redis_url: str) -> Run:
    """The project's sync task (the default path) and the recipe's wrapper."""
    return simulate(django_q_database_url, "--broker", redis_url, "--task", TASK, "--args",
                    "[1]", "--wrapper", WRAPPER)  # fmt: skip


@pytest.fixture(scope="module")
def prefork(django_q_database_url: str, redis_url: str) -> Run:
    """qcluster's main process querying before it forks (the probe's async-to-sync mode, which
    returns its connection: the fix's proof measures clean, not pinned)."""
    return simulate(django_q_database_url, "--broker", redis_url, "--prefork", "--modes",
                    "async-to-sync", "--task-timeout", "3")  # fmt: skip


def test_the_default_path_keeps_one_connection_per_worker_between_tasks(default: Run) -> None:
    # django-q's worker calls close_old_connections() before each task, never after: the
    # connection a sync task used stays checked out by the worker until its next task.
    result = default.result(TASK)
    assert result["verdict"] == "pinned", result["summary"]
    assert sum(w["tasks"] for w in result["workers"]) == 6
    assert result["lost_slots"] == 0 and result["crossed_replies"] == 0
    assert all(w["held"] == 1 and not w["inherited_pool"] for w in result["workers"])
    runner = default.report["runner"]
    assert (runner["name"], runner["pool"], runner["forks"]) == ("django-q", "cluster", True)
    assert runner["command"] == "manage.py qcluster"
    assert "close_old_connections() before each task and nothing after" in (
        runner["django_integration"])  # fmt: skip


def test_the_leaking_wrapper_is_caught_with_its_line(default: Run) -> None:
    result = default.result(WRAPPER)
    assert result["verdict"] == "leak", result["summary"]
    assert sum(w["lost"] for w in result["workers"]) >= 2
    # The probe's planned failures came back as the exceptions raised (django-q's worker keeps
    # only their text): expected, not counted as errors. A worker that got five of the six
    # tasks runs dry on its fifth: the watchdog's record of that wait is a pool timeout, the one
    # error allowed, and only then.
    unexpected = dict(result["errors"])
    if "exhaustion" in (result["stop_detail"] or ""):
        assert unexpected.pop("pool timeout", 0) <= 1, result["errors"]
    assert result["failed_tasks"] >= 1 and unexpected == {}, result["errors"]
    line = line_of(DJANGOQPROJ / "djangoqproj" / "wrappers.py", "return await async_func")
    sites = {(s["file"], s["line"]) for w in result["workers"] for s in w["leak_sites"]}
    assert ("djangoqproj/wrappers.py", line) in sites


def test_a_parent_warmed_before_the_fork_is_unsafe_and_the_fix_is_proven(prefork: Run) -> None:
    report = prefork.report
    assert report["verdict"] == "unsafe", report["headline"]
    result = prefork.result("async-to-sync")
    assert result["verdict"] == "unsafe"
    assert all(w["inherited_pool"] for w in result["workers"])
    assert sum(w["inherited_connections"] + w["crossed_replies"] for w in result["workers"]) > 0
    assert report["runner"]["warm_parent"] is True
    fix = report["fix"]
    assert (fix["subject"], fix["measured"], fix["applied_to"]) == (
        "discard-inherited-pool-on-post-spawn", "clean", "async-to-sync")  # fmt: skip
    assert "post_spawn.connect(" in fix["code"] and "close_pool()" in fix["code"]
    proof = prefork.result("async-to-sync + discard-inherited-pool-on-post-spawn")
    assert proof["verdict"] == "clean"
    assert not any(w["inherited_pool"] or w["inherited_connections"] for w in proof["workers"])


@pytest.mark.parametrize("run", ["default", "prefork"])
def test_nothing_is_left_behind(run: str, request: pytest.FixtureRequest) -> None:
    done: Run = request.getfixturevalue(run)
    done.assert_nothing_left()


@pytest.mark.parametrize(
    ("broker", "said"),
    [
        ("embedded", "--broker redis://127.0.0.1:6379/N"),
        ("amqp://127.0.0.1:5672//", "--runner django-q takes a Redis URL"),
    ],
)
def test_a_broker_django_q_cannot_use_is_one_line(django_q_database_url: str, broker: str,
                                                  said: str) -> None:  # fmt: skip
    run = simulate(django_q_database_url, "--broker", broker, "--task", TASK)
    assert run.code == 2, run.stderr
    assert said in run.stderr
    assert "Traceback" not in run.stderr
