"""GIVEN a real worker on the threads pool (tasks run in the worker's own process, not in forked
children) and one on prefork, both running the blog recipe, WHEN the fleet is asked for its
census, THEN the threads worker's reply is a fresh snapshot of its main process with the leak and
its site, AND a warm shutdown of the prefork worker removes its children's snapshot files."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from pooldoctor.celery import COMMAND, node_directory

from .inspect_fleet import (
    BROKERS,
    DONE_WITHIN,
    FIXTURES,
    INSPECTPROJ,
    TASKS,
    Fleet,
    Node,
    _kill,
    _reachable,
    _start,
    _wait_ready,
)


@pytest.fixture(scope="module")
def threads_fleet(
    inspect_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    broker_url, backend = BROKERS["redis"]
    _reachable("redis", broker_url)
    token = uuid.uuid4().hex[:8]
    nodes = {
        "threads": Node(f"threads-{token}@host5", f"threads-{token}", installed=True),
        "prefork": Node(f"prefork-{token}@host6", f"prefork-{token}", installed=True),
    }
    env = {**os.environ, "DATABASE_URL": inspect_database_url, "INSPECTPROJ_BROKER": broker_url,
           "INSPECTPROJ_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(INSPECTPROJ), str(FIXTURES / "leaky")])}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("INSPECTPROJ_NO_INSTALL", None)
    app = Celery(f"inspect-threads-{token}", broker=broker_url, backend=backend)
    fleet = Fleet("redis", app, nodes, {}, {})
    logs = tmp_path_factory.mktemp("inspect-threads")
    try:
        for pool, node in nodes.items():
            fleet.logs[pool] = logs / f"{pool}.log"
            fleet.procs[pool] = _start(node, env, fleet.logs[pool], pool=pool)
        _wait_ready(fleet)
        results = [app.send_task("inspectproj.leaky", args=[i], queue=node.queue)
                   for node in nodes.values() for i in range(TASKS)]  # fmt: skip
        for result in results:
            result.get(timeout=DONE_WITHIN)
        yield fleet
    finally:
        for proc in fleet.procs.values():
            _kill(proc)
        app.close()
        for node in nodes.values():
            shutil.rmtree(node_directory(node.name), ignore_errors=True)


def counted(fleet: Fleet, role: str) -> dict[str, Any]:
    """The node's reply once its snapshots count every task (bounded by DONE_WITHIN)."""
    name = fleet.name(role)
    deadline = time.monotonic() + DONE_WITHIN
    reply: dict[str, Any] = {}
    while time.monotonic() < deadline:
        replies = fleet.app.control.broadcast(COMMAND, reply=True, timeout=5,
                                              destination=[name], limit=1)  # fmt: skip
        reply = next((r[name] for r in replies if name in r), {})
        if sum(p["tasks"] for p in reply.get("processes", [])) == TASKS:
            return reply
    pytest.fail(f"the {role} worker did not count {TASKS} tasks: {reply}")


def test_the_worker_itself_is_the_process_that_leaks(threads_fleet: Fleet) -> None:
    reply = counted(threads_fleet, "threads")
    assert reply["pool"] == "threads"
    [process] = reply["processes"]
    assert process["main"] is True
    assert process["pid"] == reply["pid"] == threads_fleet.procs["threads"].pid
    assert process["lost"] > 0
    assert {(s["kind"], s["file"], s["function"]) for s in process["leak_sites"]} == {
        ("lost", "inspectproj/tasks.py", "read_catalog")
    }


def test_a_warm_shutdown_removes_the_snapshot_files(threads_fleet: Fleet) -> None:
    reply = counted(threads_fleet, "prefork")
    directory = node_directory(threads_fleet.name("prefork"))
    written = {int(path.stem) for path in directory.glob("*.json")}
    assert written == {p["pid"] for p in reply["processes"]}, "a child wrote no snapshot"
    _kill(threads_fleet.procs["prefork"])  # SIGTERM first: Celery's warm shutdown
    assert threads_fleet.procs["prefork"].returncode == 0  # it stopped on SIGTERM, not SIGKILL
    assert list(directory.glob("*.json")) == []
