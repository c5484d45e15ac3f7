"""``simulate --runner rq``: real rqworker processes (django-rq's command, RQ's worker classes
with pooldoctor's hooks) on Redis database 3, one run per fixture, shared by the module."""

from __future__ import annotations

import pytest

from ..fleets import Run
from .conftest import simulate

SMALL = ("--workers", "2", "--tasks", "6", "--task-timeout", "3")


@pytest.fixture(scope="module")
def fork_default(rq_database_url: str, redis_url: str) -> Run:
    """The default kind (Worker: a work horse forked per job), parent not warmed."""
    return simulate(rq_database_url, "--modes", "async-to-sync",
                    "--task", "rqproj.jobs.count_databases", *SMALL)  # fmt: skip


@pytest.fixture(scope="module")
def simple_leaky(rq_database_url: str, redis_url: str) -> Run:
    return simulate(rq_database_url, "--pool", "simple", "--wrapper", "rqproj.wrappers:run_async",
                    *SMALL)  # fmt: skip


@pytest.fixture(scope="module")
def fork_warmed(rq_database_url: str, redis_url: str) -> Run:
    return simulate(rq_database_url, "--prefork", "--modes", "async-to-sync", *SMALL)


@pytest.fixture(scope="module")
def pool_warmed(rq_database_url: str, redis_url: str) -> Run:
    """django-rq's rqworker-pool: one process loads the project and forks the workers."""
    return simulate(rq_database_url, "--pool", "pool", "--prefork", "--modes", "async-to-sync",
                    *SMALL)  # fmt: skip


def test_the_default_fork_worker_runs_the_probe_clean_one_horse_per_job(fork_default: Run) -> None:
    result = fork_default.result("async-to-sync")
    assert result["verdict"] == "clean", result["summary"]
    assert len(result["workers"]) == 6  # a horse per job
    assert all(w["tasks"] == 1 and not w["inherited_pool"] for w in result["workers"])
    runner = fork_default.report["runner"]
    assert (runner["name"], runner["pool"], runner["forks"]) == ("rq", "fork", True)
    assert runner["command"].startswith("manage.py rqworker pooldoctor-")
    assert "--worker-class pooldoctor.hosts.rq.workers.RUN" in runner["command"]
    assert "reset_db_connections" in runner["django_integration"]


def test_a_sync_job_leaves_its_connection_checked_out_when_its_horse_ends(
    fork_default: Run,
) -> None:
    # Nothing of django-rq's closes it; the horse's os._exit takes it away.
    result = fork_default.result("rqproj.jobs.count_databases")
    assert result["verdict"] == "pinned", result["summary"]
    assert result["lost_slots"] == 0 and result["crossed_replies"] == 0
    assert all(w["held_connections"] == 1 for w in result["workers"])


def test_the_leaking_recipe_on_simple_workers_is_a_leak_at_its_line(simple_leaky: Run) -> None:
    result = simple_leaky.result("rqproj.wrappers:run_async")
    assert result["verdict"] == "leak", result["summary"]
    assert result["lost_slots"] >= 3
    sites = {(s["file"], s["line"]) for w in result["workers"] for s in w["leak_sites"]}
    assert ("rqproj/wrappers.py", 14) in sites
    assert simple_leaky.report["runner"]["forks"] is False


def test_a_warmed_worker_shares_its_pool_with_its_horses_and_the_fix_is_proven(
    fork_warmed: Run,
) -> None:
    report = fork_warmed.report
    assert report["verdict"] == "unsafe", report["headline"]
    result = fork_warmed.result("async-to-sync")
    assert result["verdict"] == "unsafe"
    assert sum(w["inherited_connections"] for w in result["workers"]) >= 6
    assert all(w["inherited_pool"] for w in result["workers"])
    fix = report["fix"]
    assert (fix["measured"], fix["applied_to"]) == ("clean", "async-to-sync")
    assert "def main_work_horse" in fix["code"] and "close_pool()" in fix["code"]
    proof = fork_warmed.result(f"async-to-sync + {fix['subject']}")
    assert proof["verdict"] == "clean"
    assert not any(w["inherited_pool"] or w["inherited_connections"] for w in proof["workers"])


def test_rqworker_pool_forks_workers_and_horses_from_one_warmed_parent(pool_warmed: Run) -> None:
    report = pool_warmed.report
    assert report["verdict"] == "unsafe", report["headline"]
    assert report["runner"]["command"].startswith("manage.py rqworker-pool pooldoctor-")
    result = pool_warmed.result("async-to-sync")
    # Horses of different workers use the same sockets at once: some of their queries fail
    # mid-protocol instead of echoing, so not every horse's use is counted.
    assert all(w["inherited_pool"] for w in result["workers"])
    assert sum(w["inherited_connections"] for w in result["workers"]) >= 1
    assert report["fix"]["measured"] == "clean"


@pytest.mark.parametrize("run", ["fork_default", "simple_leaky", "fork_warmed", "pool_warmed"])
def test_a_run_leaves_no_process_session_or_redis_key(
    run: str, request: pytest.FixtureRequest
) -> None:
    finished: Run = request.getfixturevalue(run)
    assert finished.workers_seen, "no worker process of the run was seen"
    finished.assert_nothing_left()
