"""Real Celery workers of tests/projects/inspectproj, on a real Redis and a real RabbitMQ (the
fixtures are in this directory's conftest.py).

Three nodes per broker, as three hosts would run them: ``leaky`` (the blog recipe's wrapper) and
``clean`` (a clean wrapper) with ``pooldoctor.celery.install(app)``, and ``plain`` without it. Node
and queue names carry a per-session token, so that other runs on the same brokers never mix in.
The workers run in their own process groups, killed at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery import Celery
from conftest import scratch_database

from pooldoctor.celery import COMMAND, node_directory

TESTS = Path(__file__).resolve().parent.parent
FIXTURES = TESTS.parent / "pooldoctor" / "demo"
INSPECTPROJ = TESTS / "projects" / "inspectproj"
BROKERS = {
    "redis": ("redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/14"),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "rpc://"),
}
"""Broker and result backend per broker kind."""
TASKS = 4
"""Per queue: at most 4 per child, the pool's max_size, so the recipe's leak never exhausts it."""
READY_WITHIN = 60.0
DONE_WITHIN = 60.0


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    queue: str
    installed: bool


@dataclasses.dataclass
class Fleet:
    broker: str
    app: Celery
    nodes: dict[str, Node]
    """By role: leaky, clean, plain."""
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def name(self, role: str) -> str:
        return self.nodes[role].name

    def census(self, timeout: float = 5) -> dict[str, Any]:
        """The nodes' replies to ``pooldoctor_census``, by node name."""
        names = [node.name for node in self.nodes.values()]
        replies = self.app.control.broadcast(
            COMMAND, reply=True, timeout=timeout, destination=names, limit=len(names)
        )
        return {name: answer for reply in replies for name, answer in reply.items()}

    def ping(self, timeout: float = 1) -> set[str]:
        names = [node.name for node in self.nodes.values()]
        replies = self.app.control.ping(destination=names, timeout=timeout)
        return {name for reply in replies for name in reply}

    def log_tail(self, role: str, lines: int = 30) -> str:
        text = self.logs[role].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def inspect_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_inspect") as url:
        yield url


def _reachable(kind: str, url: str) -> None:
    """Fail (never skip) when the broker is not there: .ci/run starts both."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=3) as conn:
            if kind == "redis":
                conn.sendall(b"PING\r\n")
                answer = conn.recv(64)
                if not answer.startswith(b"+PONG"):
                    pytest.fail(f"{url} did not answer PING like Redis: {answer!r}")
    except OSError as exc:
        start = "redis-server" if kind == "redis" else "rabbitmq-server -detached"
        pytest.fail(f"{kind} is not reachable at {url} ({exc}): start it ({start}; .ci/run "
                    "does)", pytrace=False)  # fmt: skip


@pytest.fixture(scope="module", params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    _reachable(kind, BROKERS[kind][0])
    return kind


def _start(
    node: Node, env: dict[str, str], log: Path, pool: str = "prefork"
) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("celery")), "-A", "inspectproj.celery:app",
               "worker", "-n", node.name, "-Q", node.queue, "-P", pool, "-c", "2",
               "-l", "info", "--without-gossip", "--without-mingle"]  # fmt: skip
    if not node.installed:
        env = {**env, "INSPECTPROJ_NO_INSTALL": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=INSPECTPROJ, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (a warm shutdown), SIGKILL to it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig is signal.SIGTERM:
            # The main process is gone; its children may not be.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        break


def _wait_ready(fleet: Fleet) -> None:
    """Every node answers ping, within READY_WITHIN; a worker that died fails at once."""
    deadline = time.monotonic() + READY_WITHIN
    want = {node.name for node in fleet.nodes.values()}
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for role, proc in fleet.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"worker {fleet.name(role)} exited with {proc.returncode} on "
                            f"{fleet.broker}:\n{fleet.log_tail(role)}")  # fmt: skip
        seen |= fleet.ping()
        if seen >= want:
            return
    missing = sorted(want - seen)
    logs = "\n".join(fleet.log_tail(role) for role in fleet.nodes)
    pytest.fail(f"workers {missing} did not answer ping within {READY_WITHIN:g} s on "
                f"{fleet.broker}:\n{logs}")  # fmt: skip


@pytest.fixture(scope="module")
def fleet(
    broker: str, inspect_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The three nodes on ``broker``, ready, with TASKS tasks run on each of the two queues."""
    token = uuid.uuid4().hex[:8]
    broker_url, backend = BROKERS[broker]
    nodes = {
        role: Node(f"{role}-{token}@host{i}", f"{role}-{token}", installed=role != "plain")
        for i, role in enumerate(("leaky", "clean", "plain"), start=1)
    }
    logs_dir = tmp_path_factory.mktemp(f"inspect-{broker}")
    env = {**os.environ, "DATABASE_URL": inspect_database_url, "INSPECTPROJ_BROKER": broker_url,
           "INSPECTPROJ_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(INSPECTPROJ), str(FIXTURES / "leaky")])}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("INSPECTPROJ_NO_INSTALL", None)
    app = Celery(f"inspect-tests-{token}", broker=broker_url, backend=backend)
    app.conf.broker_connection_retry_on_startup = True
    fleet = Fleet(broker, app, nodes, {}, {})
    try:
        for role, node in nodes.items():
            fleet.logs[role] = logs_dir / f"{role}.log"
            fleet.procs[role] = _start(node, env, fleet.logs[role])
        _wait_ready(fleet)
        results = [
            app.send_task(f"inspectproj.{role}", args=[i], queue=nodes[role].queue)
            for role in ("leaky", "clean")
            for i in range(TASKS)
        ]
        for result in results:
            result.get(timeout=DONE_WITHIN)
        yield fleet
    finally:
        for proc in fleet.procs.values():
            _kill(proc)
        app.close()
        for node in nodes.values():
            shutil.rmtree(node_directory(node.name), ignore_errors=True)


def settled_census(fleet: Fleet, tasks: int = TASKS) -> dict[str, Any]:
    """The census once each installed node's processes have written their snapshot of every task.

    A task's result reaches the client before the worker's task_postrun handlers run (where the
    snapshot is written), so the count is waited for, bounded by DONE_WITHIN.
    """
    deadline = time.monotonic() + DONE_WITHIN
    census: dict[str, Any] = {}
    while time.monotonic() < deadline:
        census = fleet.census()
        counts = [
            sum(p["tasks"] for p in census.get(fleet.name(role), {}).get("processes", []))
            for role in ("leaky", "clean")
        ]
        if counts == [tasks, tasks]:
            return census
    pytest.fail(f"the census did not count {tasks} tasks per node within {DONE_WITHIN:g} s: "
                f"{census}")  # fmt: skip
