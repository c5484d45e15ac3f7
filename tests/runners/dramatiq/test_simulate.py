"""``simulate --runner dramatiq``: real ``dramatiq`` workers (``--processes 2 --threads 1``, and
``--processes 1 --threads 2``) on Redis database 4, fed the project's actors and the probe through
its wrapper; every worker process, pooldoctor session and Redis key of a run is gone after it."""

from __future__ import annotations

import pytest
from conftest import pooldoctor

from ..fleets import Run
from .conftest import DRAMATIQPROJ, FLEET, SETTINGS, simulate
from .test_check_task import line_of

WRAPPER = "dramatiqproj.wrappers:async_task_wrapper"


@pytest.fixture(scope="module")
def processes(dramatiq_database_url: str, redis_url: str) -> Run:
    return simulate(dramatiq_database_url, "--pool", "processes",
                    "--task", "dramatiqproj.tasks.count_databases",
                    "--task", "dramatiqproj.tasks.leaky", "--wrapper", WRAPPER)  # fmt: skip


@pytest.fixture(scope="module")
def threads(dramatiq_database_url: str, redis_url: str) -> Run:
    return simulate(dramatiq_database_url, "--pool", "threads",
                    "--task", "dramatiqproj.tasks.count_databases",
                    "--task", "dramatiqproj.tasks.count_databases_async")  # fmt: skip


def test_the_real_dramatiq_command_runs_the_projects_middleware(processes: Run) -> None:
    runner = processes.report["runner"]
    assert runner["name"] == "dramatiq" and runner["pool"] == "processes"
    assert "--processes 2 --threads 1" in runner["command"]
    assert "DbConnectionsMiddleware closes unusable or obsolete" in runner["django_integration"]
    # The main process, and one worker process per --processes, were this run's.
    assert len(processes.workers_seen) >= 3, processes.workers_seen


def test_the_default_path_is_clean_in_every_worker_process(processes: Run) -> None:
    result = processes.result("dramatiqproj.tasks.count_databases")
    assert result["verdict"] == "clean", processes.report["headline"]
    assert (result["tasks"], result["lost_slots"], result["crossed_replies"]) == (6, 0, 0)
    # Each worker process imported the project itself, after the fork: nothing inherited.
    assert [w["inherited_connections"] for w in result["workers"]] == [0] * len(result["workers"])
    assert sum(w["tasks"] for w in result["workers"]) == 6


def test_an_actor_on_the_leaking_wrapper_is_caught_at_its_line(processes: Run) -> None:
    result = processes.result("dramatiqproj.tasks.leaky")
    assert result["verdict"] == "leak", processes.report["headline"]
    assert result["lost_slots"] >= 2
    line = line_of("# the line a leak site names")
    for worker in result["workers"]:
        if worker["lost"]:
            assert ("dramatiqproj/tasks.py", line) in [(s["file"], s["line"])
                                                       for s in worker["leak_sites"]]  # fmt: skip
    assert processes.report["verdict"] == "leak"
    assert processes.code == 1


def test_the_wrapper_alone_is_caught_leaking(processes: Run) -> None:
    result = processes.result(WRAPPER)
    assert result["verdict"] == "leak", processes.report["headline"]
    files = {s["file"] for w in result["workers"] for s in w["leak_sites"]}
    assert "dramatiqproj/wrappers.py" in files


def test_the_threads_kind_is_measured_too(threads: Run) -> None:
    runner = threads.report["runner"]
    assert (runner["pool"], runner["forks"]) == ("threads", False)
    assert "--processes 1 --threads 2" in runner["command"]
    clean = threads.result("dramatiqproj.tasks.count_databases")
    assert (clean["verdict"], clean["tasks"], clean["lost_slots"]) == ("clean", 6, 0)
    assert len(clean["workers"]) == 1
    pinned = threads.result("dramatiqproj.tasks.count_databases_async")
    assert pinned["verdict"] == "pinned", threads.report["headline"]
    assert pinned["failed_tasks"] == 0


@pytest.mark.parametrize("fleet", ["processes", "threads"])
def test_nothing_of_a_run_is_left(fleet: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(fleet)
    assert run.workers_seen, "no worker of the run was ever seen: the check below proves nothing"
    run.assert_nothing_left()


def test_the_installed_dramatiq_command_loads_the_project_only_after_the_fork() -> None:
    # What the host's forking=() rests on, read from the installed CLI: were it to import the
    # broker module in its main process, --prefork would have a parent to warm.
    from pooldoctor.hosts.dramatiq import parent_loads_project

    assert parent_loads_project() is False


def test_prefork_is_refused_the_parent_never_loads_the_project(redis_url: str) -> None:
    proc = pooldoctor("simulate", "--runner", "dramatiq", *SETTINGS, *FLEET.options, "--prefork",
                      cwd=DRAMATIQPROJ)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "no kind of Dramatiq worker forks a process that loaded the project" in proc.stderr


def test_embedded_is_refused_with_the_redis_tip() -> None:
    proc = pooldoctor("simulate", *SETTINGS, "--runner", "dramatiq", cwd=DRAMATIQPROJ)
    assert proc.returncode == 2, proc.stderr
    assert "--broker redis://127.0.0.1:6379/N" in proc.stderr
