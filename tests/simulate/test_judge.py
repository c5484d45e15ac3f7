"""The simulate judge's rules on hand-built worker records: no Django, no Celery, no database."""

from __future__ import annotations

from typing import Any

from pooldoctor.core.findings.fleet import fleet_findings
from pooldoctor.core.model import Finding
from pooldoctor.core.verdict.fleet import CHURN_MIN_TASKS, Churn, churn, judge_fleet, warmup

PARENT = 100
POOL = {"min_size": 2, "max_size": 4, "size": 2, "available": 2, "waiting": 0,
        "connections_opened": 2, "timeout": 30.0}  # fmt: skip


def _connection(backend: int, opened_in: int) -> dict[str, Any]:
    """An idle pooled connection, as the census sees it after a task: back in the pool."""
    return {"thread": "MainThread", "thread_role": "main thread", "thread_alive": True,
            "open": True, "checked_out": False, "held": False, "transaction": "idle",
            "autocommit": True, "held_seconds": 0.0, "backend_pid": backend,
            "opened_in_pid": opened_in}  # fmt: skip


def _record(pid: int, index: int, backend: int, opened_in: int, token: str) -> dict[str, Any]:
    return {"task_id": f"{pid}-{index}", "pid": pid, "index": index, "ok": True, "error": None,
            "expected_error": False, "seconds": 0.01, "token": token, "echo": token,
            "backend_pid": backend, "opened": 0 if opened_in != pid else 1,
            "inherited_pool_in_use": opened_in != pid, "pool": POOL, "lost": 0, "held": 0,
            "connections": [_connection(backend, opened_in)], "state": "SUCCESS"}  # fmt: skip


def _sent(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"task_id": r["task_id"], "index": r["index"], "kind": "ok", "token": r["token"]}
            for r in records]  # fmt: skip


def test_a_connection_opened_in_the_parent_makes_the_worker_unsafe_without_any_crossed_reply() -> (
    None
):
    # GIVEN two children whose queries were all answered by backend 900, opened by the parent,
    #   every reply their own (no crossing happened to be caught) and the connection idle again
    records = [_record(pid, i, 900, PARENT, f"t{pid}{i}") for pid in (10, 11) for i in range(3)]
    # WHEN the fleet is judged
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    # THEN each worker used one connection another process opened: unsafe, whatever the luck
    assert fleet.verdict == "unsafe"
    assert fleet.crossed_replies == 0
    assert dict(fleet.shared_backends) == {900: (10, 11)}
    for worker in fleet.workers:
        assert (worker.verdict, worker.inherited_connections) == ("unsafe", 1)
        assert worker.inherited_pool is True
        assert "opened by another process" in worker.summary


def test_connections_each_child_opened_itself_are_clean() -> None:
    # GIVEN two children each answered by a backend of its own, opened in that child
    records = [_record(pid, i, 900 + pid, pid, f"t{pid}{i}") for pid in (10, 11) for i in range(3)]
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    # THEN nothing is shared: clean
    assert fleet.verdict == "clean", fleet.summary
    assert dict(fleet.shared_backends) == {}
    assert [w.inherited_connections for w in fleet.workers] == [0, 0]


def test_a_crossed_reply_is_unsafe() -> None:
    records = [_record(10, i, 910, 10, f"t{i}") for i in range(3)]
    records[1] = {**records[1], "echo": "t2"}
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    assert fleet.verdict == "unsafe"
    assert fleet.crossed_replies == 1
    assert fleet.workers[0].summary.startswith("1 of 3 replies belonged to another task")


# Churn (PD404): each worker process's pool warm-up is discounted, and only processes that ran
# CHURN_MIN_TASKS tasks count.


def _pool(opened: int) -> dict[str, Any]:
    return {**POOL, "connections_opened": opened}


def _churning(
    pid: int, tasks: int, opened: list[int], pools: list[dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """A child that ran ``tasks`` tasks on its own connections, opening ``opened[i]`` in task i."""
    records = [_record(pid, i, 900 + pid, pid, f"t{pid}{i}") for i in range(tasks)]
    return [{**r, "opened": n, "pool": p, "connections": [] if p is None else r["connections"]}
            for r, n, p in zip(records, opened, pools, strict=True)]  # fmt: skip


def _pd404(records: list[dict[str, Any]], celery_version: str) -> list[Finding]:
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    findings = fleet_findings([fleet], None, True, celery_version=celery_version)
    return [f for f in findings if f.code == "PD404"]


def test_a_pool_warming_up_in_three_tasks_per_child_is_not_churn() -> None:
    # GIVEN two children of three tasks each, each opening its pool's 3 connections in task 1:
    #   a raw 1.0 connection per task, which is only the pools warming up
    records = [r for pid in (10, 11) for r in _churning(pid, 3, [3, 0, 0], [_pool(3)] * 3)]
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    assert fleet.connections_per_task == 1.0
    # THEN no process ran enough tasks to tell churn from warm-up: no PD404, on any Celery
    assert churn(fleet) is None
    assert _pd404(records, "5.7.0") == []
    assert _pd404(records, "5.5.3") == []


def test_warm_up_alone_over_many_tasks_is_not_churn() -> None:
    # GIVEN children of 12 tasks whose pool opened min_size + 1 connections, the last one during
    #   task 2 (psycopg_pool fills up in the background), then reused them
    opened = [2, 1] + [0] * 10
    records = [r for pid in (10, 11) for r in _churning(pid, 12, opened, [_pool(3)] * 12)]
    fleet = judge_fleet("async-to-sync", "mode", _sent(records), records, [], None, 1.0)
    # THEN the warm-up is discounted entirely
    assert [warmup(w) for w in fleet.workers] == [3, 3]
    assert churn(fleet) == Churn(tasks=22, opened=0, processes=2, rebuilt=False)
    assert _pd404(records, "5.5.3") == []


def test_a_pool_closed_around_every_task_on_celery_5_7_is_churn_caused_by_the_fixup() -> None:
    # GIVEN children of 8 tasks each opening one connection per task, no pool left after any task
    #   (as Celery 5.7's fix-up leaves a prefork child: close_pool() in task_postrun)
    records = [r for pid in (10, 11) for r in _churning(pid, 8, [1] * 8, [None] * 8)]
    (finding,) = _pd404(records, "5.7.0")
    # THEN the first task's connection is warm-up; the 7 after it are churn, caused by the fix-up
    assert finding.message.startswith(
        "async-to-sync: 1 new server connections per task past the pool's warm-up "
        "(14 over 14 tasks in 2 worker process(es))"
    )
    assert "Celery 5.7.0's Django fix-up calls close_pool() before and after every task" in (
        finding.message
    )
    assert finding.fix.startswith("accept it")


def test_the_same_churn_on_celery_5_5_is_not_blamed_on_the_fixup() -> None:
    # GIVEN the same pool replaced around every task, on Celery 5.5
    records = [r for pid in (10, 11) for r in _churning(pid, 8, [1] * 8, [None] * 8)]
    (finding,) = _pd404(records, "5.5.3")
    # THEN the finding says Celery 5.5's fix-up never closes the pool, and what to look for
    assert "Celery 5.5.3's Django fix-up only hands the connection back to the pool" in (
        finding.message
    )
    assert "close_pool()" not in finding.message.split("never closes the pool")[0]
    assert "the pool itself was replaced between tasks" in finding.message
    assert "handler of the project's" in finding.message
    assert finding.fix == "close the pool only in worker_process_init, not around tasks"


def test_one_pool_refilling_on_celery_5_5_names_lost_or_closed_connections() -> None:
    # GIVEN one pool that keeps opening a connection per task (its own count grows with them)
    records = _churning(10, 8, [2] + [1] * 7, [_pool(2 + i) for i in range(8)])
    (finding,) = _pd404(records, "5.5.3")
    # THEN churn is the same pool refilling: lost connections, the server's, max_lifetime
    assert "the same pool kept opening connections" in finding.message
    assert "(7 over 7 tasks in 1 worker process(es))" in finding.message
    assert "max_lifetime" in finding.message


def test_a_child_under_the_task_threshold_does_not_count() -> None:
    # GIVEN one child of CHURN_MIN_TASKS - 1 tasks opening a connection for each of them
    records = _churning(10, CHURN_MIN_TASKS - 1, [1] * (CHURN_MIN_TASKS - 1),
                        [None] * (CHURN_MIN_TASKS - 1))  # fmt: skip
    # THEN too few tasks to tell: no PD404
    assert _pd404(records, "5.7.0") == []


def _no_echo(record: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    return {**record, "echo": None, "backend_pid": None, "ok": error is None, "error": error}


def test_a_fleet_whose_tasks_never_queried_is_an_error_that_says_so() -> None:
    # GIVEN a wrapper's tasks that all returned without a single echo (no query reached the server)
    records = [_no_echo(_record(10, i, 910, 10, f"t{i}")) for i in range(3)]
    fleet = judge_fleet("app:wrapper", "wrapper", _sent(records), records, [], None, 1.0)
    # THEN its code never ran: an error, in words
    assert fleet.verdict == "error"
    assert (
        fleet.summary == "no task's query reached the database in 3 tasks: the wrapper never "
        "ran the task"
    )
    # AND a coroutine nobody awaited is named as the reason
    never = "NeverAwaited: the task returned a coroutine that was never awaited: its code never ran"
    records = [_no_echo(_record(10, i, 910, 10, f"t{i}"), never) for i in range(3)]
    fleet = judge_fleet("app.task", "task", _sent(records), records, [], None, 1.0)
    assert fleet.summary == never.removeprefix("NeverAwaited: ")


def test_tasks_that_failed_on_a_shared_socket_ran_even_when_no_echo_came_back() -> None:
    # GIVEN two children on the parent's connection whose echoes all failed with their queries
    records = [_no_echo(_record(pid, i, 900, PARENT, f"t{pid}{i}"), "ValueError: bad reply")
               for pid in (10, 11) for i in range(3)]  # fmt: skip
    fleet = judge_fleet("sync-orm", "mode", _sent(records), records, [], None, 1.0)
    # THEN the fleet is judged on what it measured (every task failing), not as a probe that
    #   never ran
    assert "never ran" not in fleet.summary
    assert "3 tasks failed with ValueError: bad reply" in fleet.summary
