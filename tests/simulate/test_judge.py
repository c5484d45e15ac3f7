"""The simulate judge's rules on hand-built worker records: no Django, no Celery, no database."""

from __future__ import annotations

from typing import Any

from pooldoctor.core.verdict.fleet import judge_fleet

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
