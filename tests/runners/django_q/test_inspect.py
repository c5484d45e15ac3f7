"""``pooldoctor.django_q.install()`` and ``pooldoctor inspect --runner django-q``: a live
``qcluster`` (the project calls install() in its AppConfig.ready()) running the leaking task
shows the lost slots of its workers."""

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

from pooldoctor.hosts.django_q import purge_keys

from .conftest import DJANGOQPROJ, REDIS, SETTINGS, line_of, poll, redis_keys

TASKS = 3


def census(env: dict[str, str]) -> dict[str, Any]:
    proc = pooldoctor("inspect", "--runner", "django-q", *SETTINGS, "--format", "json",
                      cwd=DJANGOQPROJ, env=env)  # fmt: skip
    assert proc.stdout.startswith("{"), proc.stderr
    return dict(json.loads(proc.stdout))


def lost(report: dict[str, Any]) -> int:
    return sum(p["lost"] for n in report["nodes"] for p in n.get("processes", []))


def send(env: dict[str, str], count: int) -> None:
    """The project's leaky task, sent as its code would: async_task() by its dotted path."""
    code = ("import django; django.setup()\n"
            "from django_q.tasks import async_task\n"
            f"for i in range({count}): async_task('djangoqproj.tasks.leaky', i)\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], cwd=DJANGOQPROJ, env=env, check=True,
                   timeout=30, capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(django_q_database_url: str, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A qcluster of the project with install() on, fed the leaking task; stopped at the end,
    its keys deleted."""
    queue = f"djangoqinspect-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("django-q-inspect")
    env = {**os.environ, "DATABASE_URL": django_q_database_url, "DJANGOQPROJ_INSTALL": "1",
           "DJANGOQPROJ_QUEUE": queue, "DJANGOQPROJ_BROKER": redis_url, "TMPDIR": str(tmp),
           "DJANGO_SETTINGS_MODULE": "djangoqproj.settings"}  # fmt: skip
    env.pop("Q_CLUSTER_NAME", None)
    log = (tmp / "qcluster.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "django", "qcluster"], cwd=DJANGOQPROJ,
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    node = tmp / "pooldoctor-inspect"
    try:
        started = poll(lambda: list(node.glob("*/node.json")), bool)
        assert started, (tmp / "qcluster.log").read_text()
        send(env, TASKS)
        report = poll(lambda: census(env), lambda r: lost(r) >= TASKS, deadline=30)
        yield {"report": report, "proc": proc, "node": node, "queue": queue, "env": env}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # qcluster's graceful stop (its main process)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            purge_keys(REDIS, queue)


def test_the_live_census_shows_each_workers_lost_slots(cluster: dict[str, Any]) -> None:
    report = cluster["report"]
    assert report["verdict"] == "leak", report["headline"]
    (node,) = report["nodes"]
    assert node["node"].startswith(cluster["queue"])
    assert (node["pool"], node["concurrency"]) == ("cluster", 2)
    processes = node["processes"]
    assert lost(report) >= TASKS
    assert sum(p["tasks"] for p in processes) == TASKS
    assert all(not p["main"] for p in processes)  # the forked workers ran them
    sites = {(s["file"], s["line"]) for p in processes for s in p["leak_sites"]}
    line = line_of(DJANGOQPROJ / "djangoqproj" / "tasks.py", "the line a leak site names")
    assert ("djangoqproj/tasks.py", line) in sites


def test_a_stopped_cluster_leaves_no_files_and_no_keys(cluster: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = cluster["proc"]
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    node: Path = cluster["node"]
    assert poll(lambda: list(node.iterdir()), lambda left: not left) == []
    assert census(cluster["env"])["nodes"] == []
    # The cluster's stats key (it expires 3 s after the sentinel's last save) is the test's
    # to delete, with whatever else of the queue's.
    purge_keys(REDIS, cluster["queue"])
    assert redis_keys(f"django_q:{cluster['queue']}:*") == []
