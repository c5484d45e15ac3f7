"""Leak sites per worker process: where each worker's lost and pinned connections were checked out.

The end-to-end tests read the runs conftest already makes (no fleet of their own); the rendering
test builds a report by hand.
"""

from __future__ import annotations

import re
from typing import Any

from pooldoctor.core.forensics.threads import THREAD_SENSITIVE_CONTEXT
from pooldoctor.core.model import DatabaseInfo, SimulateReport
from pooldoctor.core.verdict.fleet import judge_fleet
from pooldoctor.reporters.simulate import as_text

from .sim import LEAKY, RECIPE, Sim, simulate

PROBE_FILE = "pooldoctor/core/probes/task.py"
LABEL = re.compile(r"pooldoctor\.probe\[[0-9a-f]{8}\]")
"""The label the worker gives each task for the ledger: the task's name and its id's start."""


def _probe_frames(site: dict[str, Any]) -> list[str]:
    return [entry["function"] for entry in site["stack"] if entry["file"] == PROBE_FILE]


def test_the_leaking_recipe_names_its_leak_site_in_every_worker_process(leaky_prefork: Sim) -> None:
    # GIVEN the blog recipe on prefork -c 2, leaking in both worker processes
    recipe = leaky_prefork.result(RECIPE)
    assert recipe["verdict"] == "leak", str(leaky_prefork)
    for worker in recipe["workers"]:
        # THEN each worker process names one site: the recipe's own line that runs the task
        #   (not pooldoctor's probe), on the ThreadSensitiveContext executor thread its context
        #   gives the ORM
        (site,) = worker["leak_sites"]
        assert site["kind"] == "lost"
        assert (site["file"], site["function"]) == ("mysite/celeryapp.py", "wrapped_with_context")
        assert isinstance(site["line"], int) and site["line"] > 0
        assert site["thread"] == THREAD_SENSITIVE_CONTEXT
        # AND it counts every connection that process lost, from its own tasks
        assert site["count"] == worker["lost_slots"] > 0
        assert site["tasks"] and all(LABEL.fullmatch(task) for task in site["tasks"]), site
        assert "garbage-collected while checked out" in site["reason"]
        # AND its stack, innermost first, keeps pooldoctor's probe folded in, then the recipe's
        #   two functions
        assert "pooldoctor" in site["stack"][0]["folded"], site["stack"]
        assert not _probe_frames(site)
        own = [e["function"] for e in site["stack"] if e["file"] == "mysite/celeryapp.py"]
        assert own == ["wrapped_with_context", "sync_wrapper"], site["stack"]
    # AND the same lists reach the top-level workers
    top = [w for w in leaky_prefork.report["workers"] if w["subject"] == RECIPE]
    assert [w["leak_sites"] for w in top] == [w["leak_sites"] for w in recipe["workers"]]


def test_a_clean_subject_names_no_leak_site(leaky_prefork: Sim, fixed_prefork: Sim) -> None:
    # GIVEN async-to-sync beside the leaking recipe, and the fixed recipe on its own workers
    for sim, subject in ((leaky_prefork, "async-to-sync"), (fixed_prefork, RECIPE)):
        result = sim.result(subject)
        assert result["verdict"] == "clean", str(sim)
        # THEN no worker process names any site
        assert result["workers"]
        assert [w["leak_sites"] for w in result["workers"]] == [[]] * len(result["workers"])


def test_without_tracking_sites_keep_their_thread_kind_but_name_no_line(
    sim_database_url: str,
) -> None:
    # GIVEN the leaking recipe and the pinning asyncio-run, 3 tasks on a solo worker, no stacks
    sim = simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE,
                   "--modes", "asyncio-run", "--pool", "solo", "--workers", "1", "--tasks", "3",
                   "--no-tracking", cwd=LEAKY)  # fmt: skip
    assert sim.code == 1, str(sim)
    # THEN the verdicts are as with tracking, and each site still says on which kind of thread,
    #   how many and why, but names no line and carries no stack
    for subject, kind, verdict in ((RECIPE, "lost", "leak"), ("asyncio-run", "pinned", "pinned")):
        result = sim.result(subject)
        assert result["verdict"] == verdict, str(sim)
        ((site,),) = [w["leak_sites"] for w in result["workers"]]
        assert site["kind"] == kind
        assert (site["file"], site["line"], site["function"], site["stack"]) == (
            None, None, None, [])  # fmt: skip
        assert site["thread"]
        assert site["count"] >= 1
    (recipe,) = sim.result(RECIPE)["workers"]
    assert recipe["leak_sites"][0]["thread"] == THREAD_SENSITIVE_CONTEXT


SITE = {
    "kind": "lost",
    "file": "shop/tasks.py",
    "line": 42,
    "function": "refresh_prices",
    "thread": THREAD_SENSITIVE_CONTEXT,
    "count": 2,
    "reason": "thread ended 3 ms before its task returned; connection garbage-collected",
    "tasks": ["shop.refresh[0123abcd]", "shop.refresh[4567ef01]"],
    "thread_names": ["ThreadPoolExecutor-1_0"],
    "stack": [
        {"file": None, "line": None, "function": None, "folded": ["django"], "frames": 9},
        {"file": "shop/tasks.py", "line": 42, "function": "refresh_prices", "folded": [],
         "frames": 1},
    ],
}  # fmt: skip


def _record(pid: int, index: int, lost: int) -> dict[str, Any]:
    return {"task_id": f"{pid}-{index}", "pid": pid, "index": index, "ok": True, "error": None,
            "expected_error": False, "seconds": 0.01, "token": "t", "echo": "t",
            "backend_pid": 900 + index, "opened": 1, "inherited_pool_in_use": False,
            "pool": None, "lost": lost, "held": 0, "connections": [],
            "state": "SUCCESS"}  # fmt: skip


def test_text_report_lists_each_worker_process_s_sites_under_it() -> None:
    # GIVEN two worker processes, one of which lost two connections at one site
    records = [_record(10, i, i) for i in range(3)] + [_record(11, i, 0) for i in range(3)]
    sent = [{"task_id": r["task_id"], "index": r["index"], "kind": "ok", "token": "t"}
            for r in records]  # fmt: skip
    fleet = judge_fleet("shop.celery:run_async", "wrapper", sent, records, [], None, 1.0,
                        {10: [SITE], 11: []})  # fmt: skip
    assert [len(w.leak_sites) for w in fleet.workers] == [1, 0]
    report = SimulateReport(
        verdict=fleet.verdict, headline="LEAK.", environment={},
        database=DatabaseInfo("default", "postgresql", "postgresql://db", None, 0, "16", 100,
                              "settings"),
        celery={"version": "5.7.0", "pool": "prefork", "concurrency": 2, "django_fixup": True,
                "warm_parent": False, "broker": "embedded", "signal_handlers": []},
        results=(fleet,), findings=(), fix=None, seconds=1.0,
    )  # fmt: skip
    # WHEN it is rendered as text
    lines = as_text(report).splitlines()
    # THEN the site's lines follow the worker that lost the connections, indented under it
    start = lines.index(next(line for line in lines if line.startswith("  worker pid 10:")))
    assert lines[start + 1 : start + 5] == [
        f"    LOST    shop/tasks.py:42 in refresh_prices() via {THREAD_SENSITIVE_CONTEXT}",
        "            (thread ended 3 ms before its task returned; connection garbage-collected)",
        "            x2 connections, from shop.refresh[0123abcd], shop.refresh[4567ef01]",
        "            stack: [django] < refresh_prices (shop/tasks.py:42)",
    ]
    assert lines[start + 5].startswith("  worker pid 11:")
