"""``pooldoctor.huey.install(HUEY)`` and ``pooldoctor inspect --runner huey``: a live ``run_huey``
consumer (process workers) running the leaking task shows the lost slots of its workers."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..fleets import forked_sites, line_of, redis_keys, start, stop
from .conftest import FLEET, HUEYPROJ, REDIS

TASKS = 3


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
    log = tmp / "consumer.log"
    proc = start("run_huey", "-k", "process", "-w", "2", "--no-periodic", cwd=HUEYPROJ, env=env,
                 log=log)  # fmt: skip
    try:
        report = FLEET.live_census(env, log, lambda: _enqueue(queue, TASKS), TASKS)
        yield {"report": report, "proc": proc, "queue": queue, "env": env}
    finally:
        try:
            stop(proc, signal.SIGINT, group=True, timeout=15)  # the consumer's graceful stop
        finally:
            drop_queue(queue)


def drop_queue(queue: str) -> None:
    """The consumer's keys (its results: the project keeps them) go with the test."""
    from redis import Redis

    with Redis.from_url(REDIS) as client:
        keys = redis_keys(REDIS, f"huey.*.{queue}*")
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
    sites = forked_sites(consumer["report"], consumer["queue"], ("process", 2), TASKS)
    line = line_of(HUEYPROJ / "hueyproj" / "tasks.py", "the line a leak site names")
    assert ("hueyproj/tasks.py", line) in sites


def test_a_stopped_consumer_leaves_no_files_and_no_keys(consumer: dict[str, Any]) -> None:
    assert stop(consumer["proc"], signal.SIGINT, group=True, timeout=15) == 0
    FLEET.assert_no_node_left(consumer["env"])
    drop_queue(consumer["queue"])
    assert redis_keys(REDIS, f"huey.*.{consumer['queue']}*") == set()
