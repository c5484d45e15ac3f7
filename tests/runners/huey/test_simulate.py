"""``pooldoctor simulate --runner huey``: real ``run_huey`` consumers (djhuey), real PostgreSQL,
Redis DB 5 (and Huey's file storage for ``--broker embedded``)."""

from __future__ import annotations

import pytest

from pooldoctor.hosts.huey import file_storage_is_shared

from ..fleets import Run, line_of
from .conftest import HUEYPROJ, simulate

TASK = "hueyproj.tasks.count_databases"
PLAIN = "hueyproj.tasks.count_databases_plain"
WRAPPER = "hueyproj.wrappers:async_task_wrapper"


@pytest.fixture(scope="module")
def threads(huey_database_url: str, redis_url: str) -> Run:
    """The default kind (thread): the project's db_task and the recipe's wrapper."""
    return simulate(huey_database_url, "--broker", redis_url, "--task", TASK, "--task", PLAIN,
                    "--args", "[1]", "--wrapper", WRAPPER)  # fmt: skip


@pytest.fixture(scope="module")
def prefork(huey_database_url: str, redis_url: str) -> Run:
    """The process kind, the consumer's parent querying before the fork."""
    return simulate(huey_database_url, "--broker", redis_url, "--prefork", "--task", TASK,
                    "--args", "[1]", "--task-timeout", "3")  # fmt: skip


@pytest.fixture(scope="module")
def embedded(huey_database_url: str) -> Run:
    """No --broker: Huey's file storage in the run's directory, shared by the forked workers."""
    return simulate(huey_database_url, "--pool", "process", "--task", TASK, "--args", "[1]")


def test_the_default_path_is_clean_on_thread_workers(threads: Run) -> None:
    result = threads.result(TASK)
    assert result["verdict"] == "clean", threads.stdout
    assert sum(w["tasks"] for w in result["workers"]) == 6
    runner = threads.report["runner"]
    assert (runner["name"], runner["pool"], runner["forks"]) == ("huey", "thread", False)
    assert runner["command"] == "django-admin run_huey -k thread -w 2 --no-periodic"
    assert "close_db()" in runner["django_integration"]


def test_each_record_is_taken_after_djhueys_close_db(threads: Run) -> None:
    # The same body under a plain task() keeps a connection per worker thread; as a db_task,
    # close_db returned it before the record was written.
    assert all(w["held"] == 0 for w in threads.result(TASK)["workers"])
    assert sum(w["held"] for w in threads.result(PLAIN)["workers"]) >= 1


def test_the_leaking_wrapper_is_caught_with_its_line(threads: Run) -> None:
    result = threads.result(WRAPPER)
    assert result["verdict"] == "leak"
    assert sum(w["lost"] for w in result["workers"]) >= 2
    line = line_of(HUEYPROJ / "hueyproj" / "wrappers.py", "return await async_func")
    sites = [(s["file"], s["line"]) for w in result["workers"] for s in w["leak_sites"]]
    assert ("hueyproj/wrappers.py", line) in sites


def test_a_parent_warmed_before_the_fork_is_unsafe_and_the_fix_is_proven(prefork: Run) -> None:
    report = prefork.report
    result = prefork.result(TASK)
    assert report["verdict"] == "unsafe", report["headline"]
    assert result["verdict"] == "unsafe"
    assert all(w["inherited_pool"] for w in result["workers"])
    assert sum(w["inherited_connections"] + w["crossed_replies"] for w in result["workers"]) > 0
    assert report["runner"]["pool"] == "process" and report["runner"]["forks"]
    fix = report["fix"]
    assert (fix["subject"], fix["measured"], fix["applied_to"]) == (
        "discard-inherited-pool-on-startup", "clean", TASK)  # fmt: skip
    assert "@on_startup()" in fix["code"] and "close_pool()" in fix["code"]
    proof = prefork.result(f"{TASK} + discard-inherited-pool-on-startup")
    assert proof["verdict"] == "clean"
    assert not any(w["inherited_pool"] or w["inherited_connections"] for w in proof["workers"])


def test_the_embedded_broker_is_hueys_file_storage(embedded: Run) -> None:
    if not file_storage_is_shared():  # an older Huey: refused, in one line
        assert embedded.code == 2
        assert "--broker embedded: Huey" in embedded.stderr
        assert "--broker redis://127.0.0.1:6379/N" in embedded.stderr
        return
    result = embedded.result(TASK)
    assert embedded.report["runner"]["broker"] == "embedded"
    assert result["verdict"] == "clean", embedded.stdout
    assert sum(w["tasks"] for w in result["workers"]) == 6


@pytest.mark.parametrize("run", ["threads", "prefork", "embedded"])
def test_nothing_is_left_behind(run: str, request: pytest.FixtureRequest) -> None:
    done: Run = request.getfixturevalue(run)
    done.assert_nothing_left()


@pytest.mark.parametrize(
    ("broker", "code", "said"),
    [
        ("amqp://127.0.0.1:5672//", 2, "--runner huey takes a Redis URL"),
        ("redis://127.0.0.1:1/5", 3, "--broker redis://127.0.0.1:1/5: cannot reach Redis"),
    ],
)
def test_a_broker_huey_cannot_use_is_one_line(huey_database_url: str, broker: str, code: int,
                                              said: str) -> None:  # fmt: skip
    run = simulate(huey_database_url, "--broker", broker, "--task", TASK)
    assert run.code == code
    assert said in run.stderr
    assert "Traceback" not in run.stderr
