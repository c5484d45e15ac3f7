"""Hand-built census replies, as ``pooldoctor_census`` sends them (the spec's shape)."""

from __future__ import annotations

from typing import Any

from pooldoctor.core.model import ServerSession
from pooldoctor.core.server import ServerRows
from pooldoctor.hosts.celery.control import classify

NOW = 1_764_240_020.0
POOL = {"min_size": 0, "max_size": 4, "size": 4, "available": 0, "waiting": 0,
        "connections_opened": 4, "timeout": 5.0}  # fmt: skip
SITE = {
    "kind": "lost", "file": "mysite/celeryapp.py", "line": 14, "function": "run",
    "thread": "ThreadSensitiveContext executor", "count": 3,
    "reason": "thread ended 2 ms after its task; connection garbage-collected while checked out",
    "tasks": ["leaky.query[a1]", "leaky.query[a2]"], "thread_names": ["ThreadPoolExecutor-1_0"],
    "stack": [{"file": "mysite/celeryapp.py", "line": 14, "function": "run", "folded": [],
               "frames": 1}],
}  # fmt: skip


def connection(backend_pid: int, *, held: bool = False, held_seconds: float = 0.0,
               transaction: str = "idle",
               thread: str = "ThreadPoolExecutor-0_0") -> dict[str, Any]:  # fmt: skip
    return {"thread": thread, "thread_role": "process-wide sync_to_async executor",
            "thread_alive": True, "open": True, "checked_out": held, "held": held,
            "transaction": transaction, "autocommit": True, "held_seconds": held_seconds,
            "backend_pid": backend_pid, "opened_in_pid": 4243}  # fmt: skip


def process(pid: int, *, lost: int = 0, held: int = 0, tasks: int = 10, opened: int = 4,
            inherited: int = 0, connections: list[dict[str, Any]] | None = None,
            sites: list[dict[str, Any]] | None = None, main: bool = False,
            pool: dict[str, Any] | None = POOL) -> dict[str, Any]:  # fmt: skip
    return {"pid": pid, "main": main, "started": NOW - 20, "updated": NOW - 2, "tasks": tasks,
            "failed_tasks": 0, "pool": pool, "lost": lost, "held": held, "opened": opened,
            "inherited": inherited, "checkouts": tasks, "returns": tasks - lost - held,
            "connections": connections or [], "leak_sites": sites or []}  # fmt: skip


def reply(hostname: str, *processes: dict[str, Any], pool: str = "prefork") -> dict[str, Any]:
    return {"schema": 1, "pooldoctor": "0.1.0", "hostname": hostname, "pid": 4242, "pool": pool,
            "concurrency": len(processes), "alias": "default", "tracking": True,
            "processes": list(processes)}  # fmt: skip


def session(pid: int, state: str = "idle", app: str = "", addr: str | None = "127.0.0.1"
            ) -> ServerSession:  # fmt: skip
    return ServerSession(pid=pid, application_name=app, client_addr=addr, state=state,
                         backend_start="2025-11-27T10:00:00+00:00",
                         state_change="2025-11-27T10:00:05+00:00", xact_start=None)  # fmt: skip


def rows(*sessions: ServerSession) -> ServerRows:
    return ServerRows(dsn="postgresql://app:***@db:5432/shop", sessions=tuple(sessions))


LEAKY = reply("leaky@host1", process(4243, lost=3, held=0, opened=4, sites=[SITE],
                                     connections=[connection(9001)]))  # fmt: skip
CLEAN = reply("clean@host2", process(5243, opened=1, connections=[connection(9002)]))
PINNED = reply("pinned@host3", process(6243, held=1, opened=1, connections=[
    connection(9003, held=True, held_seconds=10.0, transaction="intrans")]))  # fmt: skip
# Celery's answer for a command the worker does not know, as the Celery host passes it on.
NOT_INSTALLED = classify({"error": "KeyError('pooldoctor_census')"})
