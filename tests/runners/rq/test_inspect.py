"""``pooldoctor.rq.install()`` + ``inspect --runner rq``: a live rqworker of the project, its
worker class made by install() from SimpleWorker, running the leaking job."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pooldoctor.hosts.rq import LOCKS, purge_run

from ..fleets import poll, redis_keys, start, stop
from .conftest import FLEET, REDIS, RQPROJ, SETTINGS, env_for, redis_client

DEADLINE = 30.0
JOBS = 3


@pytest.fixture(scope="module")
def live_worker(rq_database_url: str, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A real ``manage.py rqworker --worker-class rqproj.workers.CensusWorker`` that ran the
    leaking job JOBS times; its snapshot directory is the test's own (TMPDIR)."""
    from rq import Queue

    queue = f"pooldoctor-test-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("rq-inspect")
    log = tmp / "worker.log"
    worker = start("rqworker", queue, *SETTINGS, "--worker-class", "rqproj.workers.CensusWorker",
                   "--name", f"{queue}-w", cwd=RQPROJ,
                   env=env_for(rq_database_url, RQPROJ_QUEUE=queue, TMPDIR=str(tmp)),
                   log=log)  # fmt: skip
    before = redis_keys(REDIS)
    ids = [uuid.uuid4().hex for _ in range(JOBS)]
    locks = [lock for lock in LOCKS if lock not in before]
    try:
        q = Queue(queue, connection=redis_client())
        for n, job_id in enumerate(ids):
            q.enqueue_call("rqproj.jobs.leaky_count", args=(n,), job_id=job_id, result_ttl=0)
        snapshots = tmp / "pooldoctor-inspect"
        poll(lambda: _tasks_done(snapshots, JOBS) or worker.poll() is not None, bool, DEADLINE)
        assert _tasks_done(snapshots, JOBS), (
            f"the worker did not run {JOBS} jobs: {log.read_text()[-2000:]}")  # fmt: skip
        code, report = FLEET.inspect(env={"TMPDIR": str(tmp), "DATABASE_URL": rq_database_url})
        yield {
            "code": code,
            "report": report,
            "pid": worker.pid,
            "snapshots": snapshots,
            "worker": worker,
            "purge": lambda: purge_run(REDIS, queue, ids, locks),
            "before": before,
        }
    finally:
        try:
            stop(worker)
        finally:
            purge_run(REDIS, queue, ids, locks)


def _tasks_done(snapshots: Path, count: int) -> bool:
    for path in snapshots.glob("*/[0-9]*.json"):
        try:
            if json.loads(path.read_text()).get("tasks", 0) >= count:
                return True
        except ValueError:  # never half a file, but be safe
            pass
    return False


def test_inspect_shows_the_lost_connections_of_the_live_worker(live_worker: dict[str, Any]) -> None:
    report = live_worker["report"]
    (node,) = report["nodes"]
    assert (node["pool"], node["pid"]) == ("simple", live_worker["pid"])
    (process,) = node["processes"]
    assert process["pid"] == live_worker["pid"]
    assert process["tasks"] == JOBS
    assert process["lost_slots"] == JOBS
    assert process["verdict"] == "leak"
    assert ("rqproj/jobs.py", 17) in {(s["file"], s["line"]) for s in process["leak_sites"]}
    assert live_worker["code"] == 1


def test_a_stopped_worker_removes_its_snapshot_files_and_the_purge_its_keys(
    live_worker: dict[str, Any],
) -> None:
    assert stop(live_worker["worker"]) == 0
    assert list(live_worker["snapshots"].glob("*/*")) == []
    assert live_worker["purge"]() > 0
    assert redis_keys(REDIS) - live_worker["before"] == set()
