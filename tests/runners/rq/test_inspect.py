"""``pooldoctor.rq.install()`` + ``inspect --runner rq``: a live rqworker of the project, its
worker class made by install() from SimpleWorker, running the leaking job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import pooldoctor

from pooldoctor.hosts.rq import LOCKS, purge_run

from .conftest import REDIS, RQPROJ, SETTINGS, env_for, redis_client, redis_keys

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
    env = env_for(rq_database_url, RQPROJ_QUEUE=queue, TMPDIR=str(tmp))
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "rqworker", queue, *SETTINGS, "--worker-class",
         "rqproj.workers.CensusWorker", "--name", f"{queue}-w"],
        cwd=RQPROJ, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis_client()
    before = redis_keys()
    ids = [uuid.uuid4().hex for _ in range(JOBS)]
    locks = [lock for lock in LOCKS if lock.encode() not in before]
    try:
        q = Queue(queue, connection=client)
        for n, job_id in enumerate(ids):
            q.enqueue_call("rqproj.jobs.leaky_count", args=(n,), job_id=job_id, result_ttl=0)
        snapshots = tmp / "pooldoctor-inspect"
        deadline = time.monotonic() + DEADLINE
        while not _tasks_done(snapshots, JOBS):
            if worker.poll() is not None or time.monotonic() > deadline:
                output = worker.stdout.read().decode() if worker.stdout else ""
                pytest.fail(f"the worker did not run {JOBS} jobs: {output[-2000:]}")
            time.sleep(0.1)
        inspect_env = {"TMPDIR": str(tmp), "DATABASE_URL": rq_database_url}
        proc = pooldoctor("inspect", "--runner", "rq", *SETTINGS, "--format", "json",
                          cwd=RQPROJ, env=inspect_env)  # fmt: skip
        yield {
            "proc": proc,
            "pid": worker.pid,
            "snapshots": snapshots,
            "worker": worker,
            "purge": lambda: purge_run(REDIS, queue, ids, locks),
            "before": before,
        }
    finally:
        worker.terminate()
        worker.wait(timeout=10)
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
    proc = live_worker["proc"]
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    (node,) = report["nodes"]
    assert (node["pool"], node["pid"]) == ("simple", live_worker["pid"])
    (process,) = node["processes"]
    assert process["pid"] == live_worker["pid"]
    assert process["tasks"] == JOBS
    assert process["lost_slots"] == JOBS
    assert process["verdict"] == "leak"
    assert ("rqproj/jobs.py", 17) in {(s["file"], s["line"]) for s in process["leak_sites"]}
    assert proc.returncode == 1


def test_a_stopped_worker_removes_its_snapshot_files_and_the_purge_its_keys(
    live_worker: dict[str, Any],
) -> None:
    worker = live_worker["worker"]
    worker.terminate()
    worker.wait(timeout=10)
    assert worker.returncode == 0
    assert list(live_worker["snapshots"].glob("*/*")) == []
    assert live_worker["purge"]() > 0
    assert redis_keys() - live_worker["before"] == set()
