"""The project's verdict under simulate: the project's own Celery app is always under test.

guideproj is laid out as Celery's Django guide says (its package imports its Celery app), has
Django's pool on and sync tasks only, and no wrapper at all. Before Celery 5.6 the Django fix-up
leaves the pool a prefork child inherits in place, so the children share its sockets: the project
is ``unsafe`` although no subject of its own was named, and the run exits 1. The same project
with a ``worker_process_init`` handler that drops the pool exits 0. From 5.6 on the fix-up drops
the pool itself, and the same run is clean: each test takes its expectation from the installed
Celery, never from a table in pooldoctor.
"""

from __future__ import annotations

import pytest

from .sim import FIXUP_CLOSES_POOL, PROJECTS, Sim, simulate

GUIDEPROJ = PROJECTS / "guideproj"
SETTINGS = ("--settings", "guideproj.settings")
FLEET = ("--workers", "4", "--prefork", "--tasks", "12")
TASK = "guideproj.tasks.count_databases"


@pytest.fixture(scope="module")
def guide(sim_database_url: str) -> Sim:
    """simulate --workers 4 --prefork, nothing named: the built-in modes on the project's app."""
    return simulate(sim_database_url, *SETTINGS, *FLEET, "--modes", "sync-orm,async-to-sync",
                    cwd=GUIDEPROJ)  # fmt: skip


@pytest.fixture(scope="module")
def guide_handled(sim_database_url: str) -> Sim:
    """The same, with the project's worker_process_init handler that drops the pool."""
    return simulate(sim_database_url, *SETTINGS, *FLEET, "--modes", "sync-orm,async-to-sync",
                    cwd=GUIDEPROJ, env={"GUIDEPROJ_DISCARD_POOL": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def guide_task(sim_database_url: str) -> Sim:
    """The project's own sync task, sent through the broker to the real workers."""
    return simulate(sim_database_url, *SETTINGS, *FLEET, "--task", TASK, cwd=GUIDEPROJ)


def crossed_or_foreign(result: dict) -> int:  # type: ignore[type-arg]
    return result["crossed_replies"] + sum(w["inherited_connections"] for w in result["workers"])


def test_the_projects_own_app_is_found_without_app(guide: Sim) -> None:
    # GIVEN a project whose settings package imports its Celery app, and no --app
    # THEN the workers run that app, and the report says so
    assert guide.report["celery"]["app"] == "the project's app guideproj.celery:app", str(guide)
    assert guide.report["celery"]["django_fixup"] is True


def test_a_project_with_only_built_in_modes_gets_the_verdict_of_its_app(guide: Sim) -> None:
    # GIVEN no wrapper and no task of the project's: only built-in modes on its app
    report = guide.report
    sync = guide.result("sync-orm")
    # THEN the tasks' first queries echoed back through their own connections (on a shared
    #   socket some fail outright instead)
    assert sync["echoes"] > 0, str(guide)
    if FIXUP_CLOSES_POOL:
        assert sync["echoes"] == 12, str(guide)
        # (Celery >= 5.6) nothing crossed: the project's app is clean across the fork, exit 0
        assert crossed_or_foreign(sync) == 0, str(guide)
        assert report["verdict"] == "clean", str(guide)
        assert guide.code == 0, str(guide)
        assert report["headline"].startswith("Clean across the fork"), str(guide)
        return
    # (Celery < 5.6) the children used the parent's connections: the PROJECT is unsafe, exit 1,
    #   though the only subjects were built-in modes
    assert crossed_or_foreign(sync) > 0, str(guide)
    assert sync["verdict"] == "unsafe", str(guide)
    assert report["verdict"] == "unsafe", str(guide)
    assert guide.code == 1, str(guide)
    assert report["headline"].startswith("UNSAFE: the project's Celery app shares"), str(guide)


def test_only_a_fix_that_measured_clean_is_proven(guide: Sim) -> None:
    report = guide.report
    if FIXUP_CLOSES_POOL:
        # Nothing to prove across the fork: no proof fleet ran, and no fix claims to be applied
        assert not [r for r in report["results"] if r["kind"] == "fix"], str(guide)
        assert report["fix"] is None or report["fix"]["applied_to"] is None, str(guide)
        return
    # The discard-inherited-pool fix ran on every subject that showed the hazard, and the fix
    # is marked measured on the subject where it did best, with what it measured
    proofs = {r["subject"]: r for r in report["results"] if r["kind"] == "fix"}
    assert set(proofs) == {"sync-orm + discard-inherited-pool",
                           "async-to-sync + discard-inherited-pool"}, guide  # fmt: skip
    assert all(crossed_or_foreign(p) == 0 for p in proofs.values()), str(guide)
    fix = report["fix"]
    assert fix["subject"] == "discard-inherited-pool"
    measured = proofs[f"{fix['applied_to']} + discard-inherited-pool"]["verdict"]
    assert fix["measured"] == measured, str(guide)
    assert "sync-orm measured" in fix["detail"] and "async-to-sync measured" in fix["detail"]
    # AND the proof runs never count for the project's verdict
    assert report["verdict"] == "unsafe"


def test_the_projects_handler_makes_it_clean(guide_handled: Sim) -> None:
    # GIVEN the project's worker_process_init handler that drops the inherited pool
    report = guide_handled.report
    assert any("discard_inherited_pool" in h for h in report["celery"]["signal_handlers"])
    # THEN nothing is shared across the fork in any subject, and the run exits 0
    for result in report["results"]:
        assert crossed_or_foreign(result) == 0, str(guide_handled)
    assert report["verdict"] == "clean", str(guide_handled)
    assert guide_handled.code == 0, str(guide_handled)


def test_the_projects_own_task_is_judged_on_its_own_connection(guide_task: Sim) -> None:
    # GIVEN --task naming the project's sync Celery task (no built-in modes then)
    report = guide_task.report
    own = guide_task.result(TASK)
    assert own["kind"] == "task"
    assert {r["subject"] for r in report["results"] if r["kind"] != "fix"} == {TASK}
    # THEN the task ran on the workers under its own name, each run echoing its id through the
    #   connection the task itself used
    assert own["tasks"] == 12 and own["echoes"] > 0, str(guide_task)
    if FIXUP_CLOSES_POOL:
        assert own["echoes"] == 12, str(guide_task)
        assert own["verdict"] == "clean", str(guide_task)
        assert guide_task.code == 0, str(guide_task)
    else:
        assert crossed_or_foreign(own) > 0, str(guide_task)
        assert own["verdict"] == "unsafe", str(guide_task)
        assert report["verdict"] == "unsafe" and guide_task.code == 1, str(guide_task)
    # AND nothing it started is left behind
    assert not guide_task.workers_left and not guide_task.sessions_left


def test_an_async_task_runs_through_the_projects_wrapper_on_the_workers(
    sim_database_url: str,
) -> None:
    # GIVEN the project's async task body, its decorator, and arguments for it
    subject = "guideproj.tasks.count_databases_async via guideproj.wrappers:run_async"
    sim = simulate(sim_database_url, *SETTINGS, "--workers", "2", "--tasks", "6",
                   "--task", "guideproj.tasks.count_databases_async", "--args", "[1]",
                   "--wrapper", "guideproj.wrappers:run_async", cwd=GUIDEPROJ)  # fmt: skip
    # THEN the decorated task ran on the workers with those arguments, every run echoing its id
    #   through the connection its ORM call used (on the thread async_to_sync sent it to)
    own = sim.result(subject)
    assert own["kind"] == "task"
    assert own["tasks"] == 6 and own["failed_tasks"] == 0, str(sim)
    assert own["echoes"] == 6, str(sim)
    # AND the wrapper closes on the right thread: clean, and so is the project (exit 0)
    assert own["verdict"] == "clean", str(sim)
    assert sim.report["verdict"] == "clean" and sim.code == 0, str(sim)
