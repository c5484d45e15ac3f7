"""``pooldoctor.django_q.install()`` and ``pooldoctor inspect --runner django-q``: a live
``qcluster`` (the project calls install() in its AppConfig.ready()) running the leaking task
shows the lost slots of its workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pooldoctor.hosts.django_q import purge_keys

from ..fleets import forked_sites, line_of, redis_keys, start, stop
from .conftest import DJANGOQPROJ, FLEET, REDIS

TASKS = 3


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
    log = tmp / "qcluster.log"
    proc = start("qcluster", cwd=DJANGOQPROJ, env=env, log=log)
    try:
        report = FLEET.live_census(env, log, lambda: send(env, TASKS), TASKS)
        yield {"report": report, "proc": proc, "queue": queue, "env": env}
    finally:
        try:  # qcluster's graceful stop: SIGINT to its main process
            stop(proc, signal.SIGINT, timeout=20)
        finally:
            purge_keys(REDIS, queue)


def test_the_live_census_shows_each_workers_lost_slots(cluster: dict[str, Any]) -> None:
    sites = forked_sites(cluster["report"], cluster["queue"], ("cluster", 2), TASKS)
    line = line_of(DJANGOQPROJ / "djangoqproj" / "tasks.py", "the line a leak site names")
    assert ("djangoqproj/tasks.py", line) in sites


def test_a_stopped_cluster_leaves_no_files_and_no_keys(cluster: dict[str, Any]) -> None:
    assert stop(cluster["proc"], signal.SIGINT, timeout=20) == 0
    FLEET.assert_no_node_left(cluster["env"])
    # The cluster's stats key (it expires 3 s after the sentinel's last save) is the test's
    # to delete, with whatever else of the queue's.
    purge_keys(REDIS, cluster["queue"])
    assert redis_keys(REDIS, f"django_q:{cluster['queue']}:*") == set()
