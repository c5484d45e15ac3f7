"""``pooldoctor.huey.install(HUEY)`` and ``pooldoctor inspect --runner huey``: a live ``run_huey``
consumer (process workers) running the leaking task shows the lost slots of its workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import pooldoctor

from .conftest import HUEYPROJ, REDIS, poll, redis_keys

TASKS = 3


def census(env: dict[str, str]) -> dict[str, Any]:
    proc = pooldoctor("inspect", "--runner", "huey", "--settings", "hueyproj.settings",
                      "--format", "json", cwd=HUEYPROJ, env=env)  # fmt: skip
    assert proc.stdout.startswith("{"), proc.stderr
    return dict(json.loads(proc.stdout))


def lost(report: dict[str, Any]) -> int:
    return sum(p["lost"] for n in report["nodes"] for p in n.get("processes", []))


@pytest.fixture(scope="module")
def consumer(huey_database_url: str, redis_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A consumer of the project with install() on, fed the leaking task; stopped at the end,
    its queue's keys deleted."""
    queue = f"hueyinspect{uuid.uuid4().hex[:8]}"  # a name no Huey version cleans
    tmp = tmp_path_factory.mktemp("huey-inspect")
    env = {**os.environ, "DATABASE_URL": huey_database_url, "HUEYPROJ_INSTALL": "1",
           "HUEYPROJ_QUEUE": queue, "HUEYPROJ_BROKER": redis_url, "TMPDIR": str(tmp),
           "DJANGO_SETTINGS_MODULE": "hueyproj.settings"}  # fmt: skip
    log = (tmp / "consumer.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "django", "run_huey", "-k", "process", "-w",
                             "2", "--no-periodic"], cwd=HUEYPROJ, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    node = tmp / "pooldoctor-inspect"
    try:
        started = poll(lambda: list(node.glob("*/node.json")), bool)
        assert started, (tmp / "consumer.log").read_text()
        _enqueue(queue, TASKS)
        report = poll(lambda: census(env), lambda r: lost(r) >= TASKS, deadline=30)
        yield {"report": report, "proc": proc, "node": node, "queue": queue, "env": env}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the consumer's graceful stop
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            drop_queue(queue)


def drop_queue(queue: str) -> None:
    """The consumer's keys (its results: the project keeps them) go with the test."""
    from redis import Redis

    with Redis.from_url(REDIS) as client:
        keys = redis_keys(f"huey.*.{queue}*")
        if keys:
            client.delete(*keys)


def _enqueue(queue: str, count: int) -> None:
    """The project's leaky task, as its code would send it (the same message, by name)."""
    from huey import RedisHuey
    from huey.registry import Message

    huey = RedisHuey(queue, url=REDIS)
    for i in range(count):
        message = Message(uuid.uuid4().hex, "hueyproj.tasks.leaky", None, 0, 0, None, (i,), {})
        huey.storage.enqueue(huey.serializer.serialize(message), None)
    huey.storage.pool.disconnect()


def test_the_live_census_shows_each_workers_lost_slots(consumer: dict[str, Any]) -> None:
    report = consumer["report"]
    assert report["verdict"] == "leak", report["headline"]
    (node,) = report["nodes"]
    assert node["node"].startswith(consumer["queue"])
    assert (node["pool"], node["concurrency"]) == ("process", 2)
    processes = node["processes"]
    assert lost(report) >= TASKS
    assert sum(p["tasks"] for p in processes) == TASKS
    assert all(not p["main"] for p in processes)  # the forked workers ran them
    sites = {(s["file"], s["line"]) for p in processes for s in p["leak_sites"]}
    lines = (HUEYPROJ / "hueyproj" / "tasks.py").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "the line a leak site names" in text)
    assert ("hueyproj/tasks.py", line) in sites


def test_a_stopped_consumer_leaves_no_files_and_no_keys(consumer: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = consumer["proc"]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    node: Path = consumer["node"]
    assert poll(lambda: list(node.iterdir()), lambda left: not left) == []
    assert census(consumer["env"])["nodes"] == []
    drop_queue(consumer["queue"])
    assert redis_keys(f"huey.*.{consumer['queue']}*") == []
