"""What the fork does to the pool, on the installed Celery: a parent that queried before the fork,
with and without the project's own worker_process_init handler; churn; a child killed mid-task.

Celery's Django fix-up changed in 5.6: it calls close_pool() around every prefork task, so children
never use an inherited pool (and pay a connect per task instead). Before 5.6 the children share the
parent's pool and its sockets. Each test picks its expectation from ``celery.__version__``, so the
same file passes on Celery 5.5 and on 5.7.
"""

from __future__ import annotations

import pathlib
import re

from .sim import FIXUP_CLOSES_POOL, RECIPE, Sim

SUBJECT = "async-to-sync"
PROOF = f"{SUBJECT} + discard-inherited-pool"
SHARING = {"PD401", "PD402", "PD403"}
PROJECT_HANDLER = "worker_process_init: celeryproj.handlers.discard_inherited_pool"
POOL_MAX = 4


def test_warm_parent_without_a_handler(warm_parent: Sim) -> None:
    # GIVEN the project's own app (--app), the parent querying before the fork (--prefork), and
    #   no handler of the project's discarding the pool in the children
    report = warm_parent.report
    result = warm_parent.result(SUBJECT)
    workers = result["workers"]
    assert report["celery"]["warm_parent"] is True
    assert report["celery"]["django_fixup"] is True
    assert PROJECT_HANDLER not in report["celery"]["signal_handlers"]
    assert len(workers) == 2
    if FIXUP_CLOSES_POOL:
        # THEN (Celery >= 5.6) the fix-up's close_pool() keeps the children off the parent's pool:
        #   nothing inherited or crossed, no proof fleet, and a new connection for every task
        assert result["verdict"] == "clean", result["summary"]
        assert result["crossed_replies"] == 0
        assert result["shared_backends"] == {}
        assert all(w["inherited_connections"] == 0 for w in workers), workers
        assert warm_parent.codes(SUBJECT) & SHARING == set()
        assert "PD404" in warm_parent.codes(SUBJECT)
        assert result["connections_per_task"] >= 0.9
        assert PROOF not in {r["subject"] for r in report["results"]}
    else:
        # THEN (Celery < 5.6) every child runs its tasks on the parent's connections: one backend
        #   answers both processes, the fleet is unsafe, and the findings say so
        assert result["verdict"] == "unsafe", result["summary"]
        assert result["shared_backends"], "no backend answered two worker processes"
        for worker in workers:
            assert worker["verdict"] == "unsafe"
            assert worker["inherited_connections"] > 0
            assert worker["connections_opened"] == 0
        codes = warm_parent.codes(SUBJECT)
        assert {"PD401", "PD402"} <= codes
        # Replies cross only when two children use one socket at the same instant: PD403 is
        # reported exactly when that happened in this run.
        assert ("PD403" in codes) == (result["crossed_replies"] > 0)
        # AND the fix was run in the same simulation and measured clean
        proof = warm_parent.result(PROOF)
        assert proof["verdict"] == "clean", proof["summary"]
        assert proof["crossed_replies"] == 0
        assert proof["shared_backends"] == {}
        assert all(w["inherited_connections"] == 0 for w in proof["workers"])
        assert report["fix"]["subject"] == "discard-inherited-pool"
        assert "close_pool()" in report["fix"]["code"]
        assert "(measured here: with the inherited pool discarded" in next(
            f["fix"] for f in report["findings"] if f["code"] == "PD401")  # fmt: skip


def test_each_worker_process_has_its_timeline(warm_parent: Sim) -> None:
    # GIVEN the warm parent's fleet, THEN each child's timeline holds its own tasks, and its
    #   checkouts of a connection opened in the parent are marked inherited exactly when the
    #   census says the child used the parent's connections
    for worker in warm_parent.result(SUBJECT)["workers"]:
        timeline = worker["timeline"]
        assert timeline is not None, worker["pid"]
        assert len(timeline["tasks"]) == worker["tasks"]
        # A task a shared socket hung is recorded by the watchdog while it still runs, and the
        # fleet may stop before it ends: only such a task is unfinished on the timeline, and
        # only its checkouts may be still out.
        running = {t["label"] for t in timeline["tasks"] if t["ok"] is None}
        assert len(running) <= sum(1 for c in worker["census"] if "did not finish" in
                                   (c["error"] or "")), timeline["tasks"]  # fmt: skip
        inherited = [s for s in timeline["spans"] if s["inherited"]]
        assert bool(inherited) == (worker["inherited_connections"] > 0), worker["summary"]
        assert all(s["end"] == "returned" for s in timeline["spans"] if s["task"] not in running), (
            timeline["spans"])  # fmt: skip


def test_warm_parent_with_the_projects_handler(warm_parent_discarding: Sim) -> None:
    # GIVEN the same warm parent, and the project's worker_process_init handler discarding the pool
    report = warm_parent_discarding.report
    result = warm_parent_discarding.result(SUBJECT)
    # THEN pooldoctor ran the project's handler (it lists it) and, on any Celery, no child used
    #   the parent's pool: clean, nothing shared, no proof fleet needed
    assert PROJECT_HANDLER in report["celery"]["signal_handlers"]
    assert report["celery"]["warm_parent"] is True
    assert result["verdict"] == "clean", result["summary"]
    assert result["crossed_replies"] == 0
    assert result["shared_backends"] == {}
    assert all(w["inherited_connections"] == 0 for w in result["workers"])
    assert all(w["connections_opened"] > 0 for w in result["workers"])
    assert warm_parent_discarding.codes(SUBJECT) & SHARING == set()
    assert PROOF not in {r["subject"] for r in report["results"]}


def test_pool_churn_on_prefork(leaky_prefork: Sim) -> None:
    # GIVEN async-to-sync on prefork -c 2 (a clean way to run the ORM: churn is all that differs)
    result = leaky_prefork.result(SUBJECT)
    workers = result["workers"]
    assert result["verdict"] == "clean"
    if FIXUP_CLOSES_POOL:
        # THEN (Celery >= 5.6) every task opens a new server connection: PD404
        assert result["connections_per_task"] >= 0.9
        assert all(w["connections_opened"] >= w["tasks"] for w in workers), workers
        assert "PD404" in leaky_prefork.codes(SUBJECT)
    else:
        # THEN (Celery < 5.6) each child keeps its pool: connections are reused across tasks
        assert result["connections_per_task"] < 1
        assert all(w["connections_opened"] <= POOL_MAX for w in workers), workers
        assert sum(w["connections_opened"] for w in workers) < sum(w["tasks"] for w in workers)


def test_a_child_killed_mid_task(killed_child: Sim) -> None:
    # GIVEN a prefork child SIGKILLed while it runs task 3 (as the OOM killer does)
    report = killed_child.report
    # THEN every subject reports the death in Celery's own words, the lost task, and PD405
    assert killed_child.code == 1, str(killed_child)
    assert report["verdict"] == "error"
    for subject in (RECIPE, SUBJECT):
        result = killed_child.result(subject)
        assert result["verdict"] == "error", result["summary"]
        (died,) = result["children_died"]
        assert died["how"] == "signal 9 (SIGKILL)"
        assert re.fullmatch(r"ForkPoolWorker-\d+", died["name"]), died
        # The child dies within milliseconds of its task starting, often before any sampling of
        # the worker's processes could see it: check that the pid Celery names is gone instead.
        assert not pathlib.Path(f"/proc/{int(died['pid'])}").exists()
        assert result["tasks_lost"] == 1
        assert sum(w["tasks"] for w in result["workers"]) == 11
        assert {"PD405", "PD406"} <= killed_child.codes(subject)
        assert "died: signal 9 (SIGKILL)" in result["summary"]
