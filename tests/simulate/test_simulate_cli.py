"""``pooldoctor simulate`` end to end: real Celery workers on the fixture projects, real PostgreSQL,
the report read back from JSON (and JUnit) field by field."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import celery
import pytest

from .sim import (
    CELERYPROJ,
    CLEAN_WRAPPER,
    LEAKY,
    RECIPE,
    RECIPE_TASK,
    SMALL,
    Sim,
    simulate,
)

# The documented keys of every worker, then the rest of the ProcessResult a worker shares with
# inspect's processes (its census, pool and inherited pool, inspect's first key names).
WORKER_FIELDS = {"subject", "pid", "tasks", "failed_tasks", "crossed_replies",
                 "inherited_connections", "connections_opened", "lost_slots",
                 "held_connections", "verdict", "summary", "leak_sites",
                 "adopted_connections", "inherited_pool", "checkouts", "returns", "pool",
                 "tasks_until_exhaustion", "census", "node", "main", "pinned", "backend_pids",
                 "server_sessions", "gone_from_server", "updated_seconds_ago",
                 "lost", "held", "opened", "inherited", "timeline"}  # fmt: skip
EXPECTED_FAILURES = 3
"""The probe's own failing tasks in a run of 12 (raise after a query, in atomic(), open
transaction): failed, but cleaned up by a clean wrapper."""
POOL_MAX = 4


def _workers(result: dict[str, Any]) -> list[dict[str, Any]]:
    workers = result["workers"]
    assert workers, f"no worker process reported for {result['subject']}"
    return list(workers)


def test_the_leaking_recipe_on_prefork_leaks_in_every_worker_process(leaky_prefork: Sim) -> None:
    # GIVEN the blog recipe (pool max_size 4) on a real prefork worker with 2 children
    # WHEN pooldoctor simulates it with 12 tasks
    report = leaky_prefork.report
    recipe = leaky_prefork.result(RECIPE)
    # THEN the run fails (exit 1) and the recipe leaks, in each of the two worker processes
    assert leaky_prefork.code == 1, str(leaky_prefork)
    assert report["schema"] == 1
    assert report["verdict"] == "leak"
    assert recipe["kind"] == "wrapper"
    assert recipe["verdict"] == "leak"
    workers = _workers(recipe)
    assert len({w["pid"] for w in workers}) == 2
    assert all(w["verdict"] == "leak" and w["lost_slots"] > 0 for w in workers), workers
    assert recipe["lost_slots"] == sum(w["lost_slots"] for w in workers)
    # AND the pids reported are real processes this run started
    assert {w["pid"] for w in workers} <= leaky_prefork.workers_seen
    # AND the built-in async-to-sync, on the same workers' configuration, is clean
    assert leaky_prefork.result("async-to-sync")["verdict"] == "clean"
    assert report["celery"]["pool"] == "prefork"
    assert report["celery"]["concurrency"] == 2
    assert report["celery"]["warm_parent"] is False


def test_a_clean_wrapper_on_prefork_is_clean_in_every_worker_process(fixed_prefork: Sim) -> None:
    # GIVEN the fixed wrapper on prefork -c 2, Celery's Django fix-up on (the app is Django's)
    report = fixed_prefork.report
    fixed = fixed_prefork.result(RECIPE)
    # THEN every task came back, nothing was lost, held or crossed, in any worker process
    assert fixed_prefork.code == 0, str(fixed_prefork)
    assert report["verdict"] == "clean"
    assert report["headline"].startswith("Clean:")
    assert fixed["verdict"] == "clean"
    assert fixed["tasks"] == 12
    assert fixed["tasks_lost"] == 0
    assert fixed["failed_tasks"] == EXPECTED_FAILURES
    assert fixed["crossed_replies"] == 0
    assert fixed["children_died"] == []
    workers = _workers(fixed)
    assert sum(w["tasks"] for w in workers) == 12
    for worker in workers:
        assert (worker["verdict"], worker["lost_slots"], worker["held_connections"]) == (
            "clean", 0, 0), worker  # fmt: skip
        assert worker["crossed_replies"] == worker["inherited_connections"] == 0
    # AND the report says which Celery ran, and how
    assert report["celery"]["version"] == celery.__version__
    assert report["celery"]["django_fixup"] is True
    assert report["celery"]["broker"] == "embedded"
    assert (
        "worker_process_init: celery.fixups.django.DjangoWorkerFixup.on_worker_process_init"
        in report["celery"]["signal_handlers"]
    )


def test_top_level_workers_list_every_worker_of_every_subject(fixed_prefork: Sim) -> None:
    report = fixed_prefork.report
    nested = [w for r in report["results"] for w in r["workers"]]
    assert report["workers"] == nested
    assert {w["subject"] for w in report["workers"]} == {RECIPE, "async-to-sync"}
    for worker in report["workers"]:
        assert set(worker) == WORKER_FIELDS


def test_the_leaking_recipe_on_threads_exhausts_the_pool(leaky_threads: Sim) -> None:
    # GIVEN the recipe's Celery task decorator on a threads pool (one process, no fork)
    recipe = leaky_threads.result(RECIPE_TASK)
    # THEN it leaks one slot per task until the pool runs dry, and the run stops there
    assert leaky_threads.code == 1, str(leaky_threads)
    assert leaky_threads.report["verdict"] == "leak"
    assert leaky_threads.report["celery"]["pool"] == "threads"
    assert recipe["verdict"] == "leak"
    assert "pool exhaustion" in recipe["stop_detail"]
    assert recipe["errors"].get("pool timeout", 0) >= 1
    (worker,) = _workers(recipe)
    assert worker["lost_slots"] >= POOL_MAX
    assert worker["tasks"] < 12


def test_a_clean_wrapper_on_threads_is_clean(fixed_threads: Sim) -> None:
    fixed = fixed_threads.result(RECIPE_TASK)
    assert fixed_threads.code == 0, str(fixed_threads)
    assert fixed_threads.report["verdict"] == "clean"
    assert fixed["verdict"] == "clean"
    assert fixed["stop_detail"] is None
    (worker,) = _workers(fixed)
    assert worker["tasks"] == 12
    assert worker["failed_tasks"] == EXPECTED_FAILURES
    assert (worker["lost_slots"], worker["held_connections"]) == (0, 0)


def test_redis_broker(redis_fleet: Sim, redis_broker: str) -> None:
    # GIVEN a real Redis as the broker instead of the embedded one
    report = redis_fleet.report
    # THEN the tasks travel through it and every one comes back
    assert redis_fleet.code == 0, str(redis_fleet)
    assert report["celery"]["broker"] == redis_broker
    for result in report["results"]:
        assert result["verdict"] == "clean", result["summary"]
        assert result["tasks_lost"] == 0
        assert sum(w["tasks"] for w in result["workers"]) == 12


def test_the_embedded_broker_leaves_no_file_in_the_project(warm_parent: Sim) -> None:
    # GIVEN a run with the embedded (filesystem) broker whose worker ran in the project directory
    assert warm_parent.report["celery"]["broker"] == "embedded"
    # THEN the project holds only its own files (kombu's ./control folder would show here)
    files = {
        p.relative_to(CELERYPROJ).as_posix()
        for p in CELERYPROJ.rglob("*")
        if "__pycache__" not in p.parts
    }
    assert files == {"celeryproj", *(f"celeryproj/{name}" for name in (
        "__init__.py", "settings.py", "celery.py", "handlers.py", "wrappers.py"))}  # fmt: skip


def test_junit_fails_the_leaking_wrapper_and_passes_the_clean_one(sim_database_url: str) -> None:
    # GIVEN the leaking recipe and a clean wrapper in one run, JUnit output
    sim = simulate(sim_database_url, "--settings", "mysite.settings", "--pythonpath",
                   str(CELERYPROJ), "--wrapper", RECIPE, "--wrapper", CLEAN_WRAPPER,
                   "--modes", "async-to-sync", *SMALL, cwd=LEAKY, fmt="junit")  # fmt: skip
    # THEN exit 1, two failures: the project's verdict and the recipe's, typed with its verdict
    #   and carrying the evidence
    assert sim.code == 1, str(sim)
    root = ET.fromstring(sim.stdout)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "pooldoctor.simulate"
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"project verdict", RECIPE, CLEAN_WRAPPER, "async-to-sync"}
    failure = cases[RECIPE].find("failure")
    assert failure is not None
    assert failure.get("type") == "leak"
    assert "worker " in (failure.text or "")
    assert "LOST    mysite/celeryapp.py:" in (failure.text or "")  # with its leak sites
    assert cases[RECIPE].get("classname") == "pooldoctor.simulate.wrapper"
    # AND the clean wrapper passes, its verdict in its output
    assert cases[CLEAN_WRAPPER].find("failure") is None
    out = cases[CLEAN_WRAPPER].find("system-out")
    assert out is not None and (out.text or "").startswith("clean:")
    assert cases["async-to-sync"].find("failure") is None


# Where connections are opened and closed around each task (churn, Celery >= 5.6) a session can
# live for less than the watch's poll; the leaking runs keep theirs open until the worker ends.
@pytest.mark.parametrize(
    ("run", "sessions_outlast_tasks"),
    [("leaky_prefork", True), ("leaky_threads", True), ("killed_child", False),
     ("warm_parent", False)],
)  # fmt: skip
def test_no_worker_process_or_database_session_outlives_a_run(
    run: str, sessions_outlast_tasks: bool, request: pytest.FixtureRequest
) -> None:
    # GIVEN a finished run (a leaking wrapper, a pool run dry, a child killed, a warm parent)
    sim: Sim = request.getfixturevalue(run)
    # THEN its workers (and sessions) were seen while it ran, so the watch below is not blind ...
    assert sim.workers_seen, "no worker process of this run was ever seen"
    assert {w["pid"] for w in sim.report["workers"]} <= sim.workers_seen
    if sessions_outlast_tasks:
        assert sim.sessions_seen, "no pooldoctor session of this run was ever seen"
    # ... and none of them is left once it is over
    assert sim.workers_left == frozenset()
    assert sim.sessions_left == frozenset()
