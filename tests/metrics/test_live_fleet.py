"""A live fleet exports its census: two prefork workers (two children each) of
tests/projects/metricsproj on Redis, one running the blog recipe's leaking task and one the clean
task, each with ``install(app, metrics_port=...)``; the leaking one also writes a text file, the
clean one runs with prometheus-client's multiprocess mode switched on for the project. The metrics
are scraped over HTTP and read with prometheus-client's own parsers.

Node and queue names carry a per-module token; the workers run in their own process groups,
killed at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from inspection.inspect_fleet import BROKERS, FIXTURES, INSPECTPROJ, _kill, _reachable
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pooldoctor.celery import node_directory
from pooldoctor.reporters.openmetrics import UNKNOWN

METRICSPROJ = Path(__file__).resolve().parent.parent / "projects" / "metricsproj"
CONCURRENCY = 2
PER_CHILD = 2
"""Tasks are sent until each child has run this many (each task returns its pid)."""
MAX_TASKS = 12
"""At most: within the project's pool max_size (16), so the recipe's leak never exhausts it."""
WITHIN = 60.0
ROLES = (("leaky", "leaky", "prefork"), ("clean", "clean", "prefork"), ("solo", "leaky", "solo"))
"""Nodes: role, task, pool. leaky: a port and a text file; clean: a port, and prometheus-client in
multiprocess mode; solo: the main process runs the tasks, a port and a text file."""


@dataclasses.dataclass
class Node:
    role: str
    name: str
    queue: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    task: str
    concurrency: int
    textfile: Path | None = None
    ran: Counter[int] = dataclasses.field(default_factory=Counter)
    """Tasks per child pid, as the tasks themselves reported."""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclasses.dataclass
class Fleet:
    app: Celery
    nodes: dict[str, Node]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str, openmetrics: bool = False) -> str:
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def per_pid(text: str, sample: str, parse: object = text_string_to_metric_families
            ) -> dict[int, float]:  # fmt: skip
    """``pid -> value`` of ``sample``, summed over its other labels."""
    out: dict[int, float] = {}
    for family in parse(text):  # type: ignore[operator]
        for s in family.samples:
            if s.name == sample:
                out[int(s.labels["pid"])] = out.get(int(s.labels["pid"]), 0) + s.value
    return out


def wait_for(node: Node, tasks: int) -> str:
    """The node's scrape once its CONCURRENCY children have reported ``tasks`` tasks in all (a
    task's result reaches the client before its child writes the snapshot)."""
    deadline = time.monotonic() + WITHIN
    text = ""
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            pytest.fail(f"worker {node.name} exited with {node.proc.returncode}:\n{node.tail()}")
        try:
            text = scrape(node.url)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)  # not listening yet: the worker is still starting
            continue
        counts = per_pid(text, "pooldoctor_tasks_total")
        if len(counts) == node.concurrency and sum(counts.values()) == tasks:
            return text
        time.sleep(0.05)
    pytest.fail(f"{node.name} did not report {tasks} tasks in {node.concurrency} processes within "
                f"{WITHIN:g} s:\n{text}\n{node.tail()}")  # fmt: skip


def send_until_every_child_ran(app: Celery, node: Node, batches: Path) -> None:
    """Send the node's task in batches of CONCURRENCY, which meet before they run (so each takes a
    child of its own, mostly), until each child has run PER_CHILD; the pool picks the child, so
    the tasks' returned pids say who ran what."""
    for batch in range(MAX_TASKS // node.concurrency):
        if len(node.ran) == node.concurrency and min(node.ran.values()) >= PER_CHILD:
            return
        rendezvous = batches / f"{node.role}-{batch}"
        rendezvous.mkdir(parents=True)
        args = [str(rendezvous), node.concurrency]
        results = [
            app.send_task(f"metricsproj.{node.task}", args=args, queue=node.queue)
            for _ in range(node.concurrency)
        ]
        for result in results:
            try:
                node.ran[int(result.get(timeout=WITHIN))] += 1
            except Exception as exc:
                pytest.fail(f"batch {batch} on {node.name}: {exc!r}\n{node.tail()}")
    if len(node.ran) < node.concurrency or min(node.ran.values()) < PER_CHILD:
        pytest.fail(f"{MAX_TASKS} tasks on {node.name} did not reach every child: {node.ran}")


@pytest.fixture(scope="module")
def fleet(inspect_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    broker_url, backend = BROKERS["redis"]
    _reachable("redis", broker_url)
    token = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("metrics-fleet")
    multiproc = root / "multiproc"
    multiproc.mkdir()
    path = os.pathsep.join([str(METRICSPROJ), str(INSPECTPROJ), str(FIXTURES / "leaky"),
                            *filter(None, [os.environ.get("PYTHONPATH")])])  # fmt: skip
    base = {**os.environ, "DATABASE_URL": inspect_database_url, "INSPECTPROJ_BROKER": broker_url,
            "INSPECTPROJ_BACKEND": backend, "PYTHONPATH": path}  # fmt: skip
    for name in ("DJANGO_SETTINGS_MODULE", "METRICSPROJ_TEXTFILE", "PROMETHEUS_MULTIPROC_DIR"):
        base.pop(name, None)
    app = Celery(f"metrics-tests-{token}", broker=broker_url, backend=backend)
    app.conf.broker_connection_retry_on_startup = True
    fleet = Fleet(app, {})
    try:
        for i, (role, task, pool) in enumerate(ROLES, start=1):
            port = free_port()
            env = {**base, "METRICSPROJ_PORT": str(port)}
            textfile = None
            if role != "clean":
                textfile = root / f"textfile-{role}" / "pooldoctor.prom"
                textfile.parent.mkdir()
                env["METRICSPROJ_TEXTFILE"] = str(textfile)
            else:
                env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
            concurrency = 1 if pool == "solo" else CONCURRENCY
            name, queue = f"{role}-{token}@metrics{i}", f"metrics-{role}-{token}"
            log = root / f"{role}.log"
            command = [str(Path(sys.executable).with_name("celery")), "-A",
                       "metricsproj.celery:app", "worker", "-n", name, "-Q", queue, "-P",
                       pool, "-c", str(concurrency), "-l", "info",
                       "--without-gossip", "--without-mingle"]  # fmt: skip
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    command, cwd=METRICSPROJ, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            fleet.nodes[role] = Node(role, name, queue, f"http://127.0.0.1:{port}/metrics", proc,
                                     log, task, concurrency, textfile)  # fmt: skip
        for node in fleet.nodes.values():
            wait_for(node, tasks=0)  # serving, and both children started
        for node in fleet.nodes.values():
            send_until_every_child_ran(fleet.app, node, root / "rendezvous")
        yield fleet
    finally:
        for node in fleet.nodes.values():
            _kill(node.proc)
            shutil.rmtree(node_directory(node.name), ignore_errors=True)
        app.close()


def test_every_child_of_the_leaking_worker_exports_lost_connections(fleet: Fleet) -> None:
    # GIVEN the leaking worker, each of its children having run a few tasks
    node = fleet.nodes["leaky"]
    text = wait_for(node, tasks=node.ran.total())
    tasks = per_pid(text, "pooldoctor_tasks_total")
    assert tasks == node.ran, text
    # THEN each child's lost counter is above zero: one connection per task, at the task's line
    lost = per_pid(text, "pooldoctor_lost_connections_total")
    assert lost == node.ran, text
    sites = {s.labels["site"] for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == "pooldoctor_lost_connections_total" and s.value}  # fmt: skip
    assert len(sites) == 1 and sites.pop().startswith("metricsproj/tasks.py:"), text
    # AND the other numbers agree: a slot per loss stays out of the pool, every series labelled
    checkouts = per_pid(text, "pooldoctor_checkouts_total")
    returns = per_pid(text, "pooldoctor_returns_total")
    assert all(checkouts[pid] - returns[pid] >= lost[pid] for pid in tasks), text
    labels = {(s.labels["node"], s.labels["alias"]) for f in text_string_to_metric_families(text)
              for s in f.samples}  # fmt: skip
    assert labels == {(node.name, "default")}
    assert f"metrics of {node.name} served on http://127.0.0.1:" in node.log.read_text()


def test_the_clean_worker_exports_zero_lost_per_child_in_multiprocess_mode(fleet: Fleet) -> None:
    # GIVEN the clean worker, whose project has prometheus-client in multiprocess mode
    node = fleet.nodes["clean"]
    text = wait_for(node, tasks=node.ran.total())
    tasks = per_pid(text, "pooldoctor_tasks_total")
    assert tasks == node.ran, text
    # THEN every child says 0 lost (one series each, site unknown), nothing held
    lost = {(int(s.labels["pid"]), s.labels["site"]): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "pooldoctor_lost_connections_total"}  # fmt: skip
    assert lost == {(pid, UNKNOWN): 0 for pid in tasks}
    assert per_pid(text, "pooldoctor_held_connections") == {pid: 0 for pid in tasks}
    # AND the OpenMetrics exposition (what Prometheus asks for first) says the same
    om = scrape(node.url, openmetrics=True)
    assert om.endswith("# EOF\n")
    assert per_pid(om, "pooldoctor_tasks_total", openmetrics_families) == tasks


def listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (Linux: /proc/net/tcp, state 0A)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    found.add(fields[9])
    return found


def test_only_the_main_process_holds_the_listening_socket(fleet: Fleet) -> None:
    # A prefork child inherits the parent's sockets; it closes its copy of the metrics one
    node = fleet.nodes["clean"]
    children = per_pid(wait_for(node, tasks=node.ran.total()), "pooldoctor_tasks_total")
    inodes = listening_inodes(int(node.url.rsplit(":", 1)[1].split("/")[0]))
    assert len(inodes) == 1

    def holds(pid: int) -> bool:
        fds = Path(f"/proc/{pid}/fd").iterdir()
        return any(os.readlink(fd) == f"socket:[{inode}]" for fd in fds for inode in inodes)

    assert holds(node.proc.pid)
    assert not any(holds(pid) for pid in children)


@pytest.mark.parametrize("role", ["leaky", "solo"])
def test_the_text_file_holds_the_whole_node(fleet: Fleet, role: str) -> None:
    node = fleet.nodes[role]
    assert node.textfile is not None
    scraped = per_pid(wait_for(node, tasks=node.ran.total()), "pooldoctor_lost_connections_total")
    # Each child rewrites it after its snapshot: the last one to finish wrote everything
    deadline = time.monotonic() + WITHIN
    found: dict[int, float] = {}
    while time.monotonic() < deadline:
        text = node.textfile.read_text() if node.textfile.exists() else ""
        found = per_pid(text, "pooldoctor_lost_connections_total")
        if found == scraped:
            break
        time.sleep(0.05)
    assert found == scraped
    assert sorted(p.name for p in node.textfile.parent.iterdir()) == ["pooldoctor.prom"]


def test_a_warm_shutdown_removes_the_text_file_and_frees_the_port(fleet: Fleet) -> None:
    node = fleet.nodes["leaky"]
    assert node.textfile is not None and node.textfile.exists()
    _kill(node.proc)  # SIGTERM first: the worker's warm shutdown
    assert node.proc.returncode == 0, node.tail()
    assert not node.textfile.exists()
    # No process listens on the port any more (the scrapes' connections may linger in
    # TIME_WAIT, which a restarted worker's server, like this socket, binds over)
    port = int(node.url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_solo_worker_exports_its_main_process(fleet: Fleet) -> None:
    node = fleet.nodes["solo"]
    text = wait_for(node, tasks=node.ran.total())
    assert node.ran == {node.proc.pid: node.ran.total()}  # the main process ran every task
    assert per_pid(text, "pooldoctor_lost_connections_total") == node.ran
