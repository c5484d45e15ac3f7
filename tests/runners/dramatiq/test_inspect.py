"""``pooldoctor.dramatiq.install(broker)`` in a live worker started the default way of a
django-dramatiq project (``manage.py rundramatiq``, which execs the ``dramatiq`` command), and
``pooldoctor inspect --runner dramatiq`` reading its process's snapshot."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from pooldoctor.hosts import live

from ..fleets import poll, redis_keys, settle, start, stop
from .conftest import DRAMATIQPROJ, FLEET, SETTINGS
from .test_check_task import line_of

DEADLINE = 30.0
TASKS = 3


class LiveWorker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, namespace: str,
                 marker: str) -> None:  # fmt: skip
        self.proc, self.log, self.namespace, self.marker = proc, log, namespace, marker

    def node(self) -> dict[str, Any] | None:
        """Its node's census as inspect reads it (its processes are forked from proc)."""
        nodes = live.read_nodes("dramatiq")
        return next((n for name, n in nodes.items() if f".{self.proc.pid}." in name), None)

    def said(self, what: str) -> str:
        return f"{what} (log: {self.log.read_text()[-800:]})"


@pytest.fixture(scope="module")
def worker(dramatiq_database_url: str, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorker]:  # fmt: skip
    namespace = f"pooldoctor-test-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    log = tmp_path_factory.mktemp("rundramatiq") / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(DRAMATIQPROJ), "DATABASE_URL": dramatiq_database_url,
           "DRAMATIQPROJ_BROKER": redis_url, "DRAMATIQPROJ_NAMESPACE": namespace,
           "DRAMATIQPROJ_INSTALL": "1", FLEET.marker: marker}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # SIGTERM (stop's) to the dramatiq command's main process, as a supervisor does: it forwards
    # the signal (one sent to its whole group would reach each worker process twice, which kills
    # it instead of a warm shutdown).
    proc = start("rundramatiq", *SETTINGS, "--processes", "1", "--threads", "2",
                 cwd=DRAMATIQPROJ, env=env, log=log)  # fmt: skip
    running = LiveWorker(proc, log, namespace, marker)
    try:
        yield running
    finally:
        stop(proc)
        client = redis.Redis.from_url(redis_url, socket_timeout=3)
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:  # the worker's heartbeat: Dramatiq leaves it for other workers to expire
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def census(worker: LiveWorker, redis_url: str) -> dict[str, Any]:
    node = poll(worker.node, bool, DEADLINE, what=lambda: worker.said("no node of the worker"))
    broker = RedisBroker(url=redis_url, namespace=worker.namespace, middleware=[])
    try:
        for _ in range(TASKS):
            broker.enqueue(dramatiq.Message(queue_name="default", actor_name="leaky", args=(0,),
                                            kwargs={}, options={"max_retries": 0}))  # fmt: skip
    finally:
        broker.close()

    def done() -> bool:
        found = worker.node()
        return bool(found and found["processes"] and found["processes"][0]["tasks"] >= TASKS)

    poll(done, bool, DEADLINE, what=lambda: worker.said(f"the worker did not run {TASKS} tasks"))
    return FLEET.inspect("--destination", node["hostname"])[1]


def test_inspect_shows_the_lost_connections_of_the_workers_process(
    census: dict[str, Any],
) -> None:
    (node,) = census["nodes"]
    assert node["node"].startswith("dramatiq@") and node["pool"] == "threads"
    (process,) = node["processes"]
    assert (process["tasks"], process["lost"], process["inherited_connections"]) == (
        TASKS,
        TASKS,
        0,
    )
    sites = [(s["file"], s["line"]) for s in process["leak_sites"]]
    assert ("dramatiqproj/tasks.py", line_of("# the line a leak site names")) in sites
    assert census["verdict"] == "leak", census["headline"]
    assert "PD501" in {f["code"] for f in census["findings"]}


def test_the_workers_files_go_with_it(census: dict[str, Any], worker: LiveWorker) -> None:
    (node,) = census["nodes"]
    directory = live.node_directory(node["node"])
    assert directory.is_dir()
    stop(worker.proc)
    assert settle(lambda: FLEET.pids(worker.marker, "dramatiq")) == set()
    # A warm shutdown: after_worker_shutdown removed the snapshot and the node file.
    assert not directory.exists(), sorted(p.name for p in directory.iterdir())
    assert worker.node() is None


def test_nothing_of_the_test_is_left_on_redis(census: dict[str, Any], worker: LiveWorker,
                                              redis_url: str) -> None:  # fmt: skip
    stop(worker.proc)
    left = redis_keys(redis_url, f"{worker.namespace}:*")
    # Only the heartbeat of a stopped worker, which the fixture deletes (checked below).
    assert left <= {f"{worker.namespace}:__heartbeats__"}, left
