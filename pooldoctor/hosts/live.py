"""The live census a worker keeps for ``pooldoctor inspect``, whatever the runner.

Every process that runs tasks keeps a :class:`pooldoctor.core.census.Ledger` of the alias's
connections, labels each task ``name[task id]`` around its run, and writes its snapshot to
``<tempdir>/pooldoctor-inspect/<node name>/<pid>.json`` (written whole, then renamed). Celery's
workers answer a remote-control command from those files (:mod:`pooldoctor.hosts.celery.install`);
the runners without remote control (RQ, Dramatiq, Huey, Django's Tasks) also write the node's
``node.json`` from its main process, and ``pooldoctor inspect --runner NAME`` reads the nodes of
this machine from the files (:func:`read_nodes`).

Read-only: no connection is opened, closed, reset or returned by any of this; the ledger only
watches Django's ``connection_created`` signal and the pool's ``putconn``. No ``gc.collect()``
either: a connection still alive but left checked out by a thread that ended counts as lost
already, so a snapshot never waits for the collector.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pooldoctor import __version__
from pooldoctor.core import census
from pooldoctor.core.model import to_dict
from pooldoctor.core.worker_process import WorkerProcess

NODE_FILE = "node.json"
"""A runner node's own facts (runner, main pid, kind of worker), written by its main process."""
_log = logging.getLogger("pooldoctor.live")

SCHEMA = 1
ROOT_NAME = "pooldoctor-inspect"
_MAX_TASK_ENDS = 1000
"""Task end times the ledger keeps (for its leak sites' timing): a worker runs for months."""
TIMELINE = 20
"""Checkouts a snapshot's timeline shows by default: the latest, enough for the story of a recent
loss. Written with every snapshot: measured, 20 add 0.15 ms to a prefork child's task (0.29 ms
without a timeline)."""
_log = logging.getLogger(__name__)


def snapshot_root() -> Path:
    return Path(tempfile.gettempdir()) / ROOT_NAME


def node_directory(hostname: str) -> Path:
    """Where a node's processes write their snapshots: its name made safe as one path part."""
    safe = re.sub(r"[^A-Za-z0-9@._-]", "_", hostname).lstrip(".") or "_"
    return snapshot_root() / safe


class Installation:
    """:func:`install`'s state for one Celery app, in one process (a prefork child inherits a
    copy and makes it its own)."""

    def __init__(self, alias: str, tracking: bool, timeline: int = TIMELINE) -> None:
        self.alias = alias
        self.tracking = tracking
        self.timeline = timeline
        self.ledger = census.Ledger(
            alias, tracking=tracking, max_task_ends=_MAX_TASK_ENDS, history=max(1, timeline)
        )
        self.hostname: str | None = None
        self.main_pid: int | None = None
        self.pool_kind: str | None = None
        self.concurrency: int | None = None
        self.process: WorkerProcess | None = None
        """This process's bookkeeping, once it runs tasks (None in a prefork worker's main)."""
        self.error: str | None = None
        """Why this process cannot keep its census (its snapshot cannot be written), if so."""
        self.started = 0.0
        self.tasks = 0
        self.failed_tasks = 0
        self.cwd = os.getcwd()
        self._lock = threading.Lock()
        self.runner: str | None = None
        """A runner without remote control (its processes write a snapshot after every task);
        None: Celery, whose main process answers with a fresh one."""
        self._forks: bool | None = None
        self.metrics: Any = None
        """Its :class:`pooldoctor.hosts.celery.metrics.Exporter`, when install() was given a
        metrics port or text file."""

    @property
    def forks(self) -> bool:
        return self.pool_kind == "prefork" if self._forks is None else self._forks

    # --- the worker's main process -----------------------------------------------------------

    def start_node(self, hostname: str, kind: str, concurrency: int, *,
                   forks: bool | None, runner: str | None = None,
                   worker: Any = None) -> None:  # fmt: skip
        """In the worker's main process, before it runs or forks anything: the node's directory
        (what a killed run left there goes), and for a runner without remote control its
        ``node.json``, which :func:`read_nodes` finds. ``forks``: whether the processes that run
        tasks are forked from this one (None: Celery's prefork pool)."""
        self.hostname = hostname
        self.main_pid = os.getpid()
        self.pool_kind = kind
        self.concurrency = concurrency
        self.runner = runner
        self._forks = forks
        self.cwd = os.getcwd()
        self.ledger.install()
        directory = node_directory(self.hostname)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for path in directory.glob("*.json"):  # a previous run's, killed before its cleanup
                if path.name != NODE_FILE and not _alive(_pid_of(path)):
                    path.unlink(missing_ok=True)
            if runner is not None:
                node = {"runner": runner, "hostname": hostname, "pid": self.main_pid,
                        "pool": kind, "concurrency": concurrency, "alias": self.alias,
                        "tracking": self.tracking, "forks": self.forks,
                        "started": time.time()}  # fmt: skip
                _write_whole(directory / NODE_FILE, json.dumps(node, sort_keys=True))
        except OSError as exc:
            self.cannot_write(directory, exc)
        if not self.forks:
            self.start_process(forked=False)
        if self.metrics is not None:
            self.metrics.start(worker, directory)

    def on_worker_shutdown(self) -> None:
        if self.hostname is None:
            return
        if self.metrics is not None:
            self.metrics.stop()
        directory = node_directory(self.hostname)
        for path in directory.glob("*.json"):
            pid = _pid_of(path)
            if pid == os.getpid() or not _alive(pid):
                path.unlink(missing_ok=True)
        if self.runner is not None:
            (directory / NODE_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty: nothing of a live process goes

    # --- a process that runs tasks ------------------------------------------------------------

    def start_process(self, *, forked: bool) -> None:
        self.process = WorkerProcess(self.ledger, self.alias, forked=forked)
        self.started = time.time()
        self.tasks = self.failed_tasks = 0
        self._lock = threading.Lock()  # a fork can copy a held lock
        if forked and self.metrics is not None:
            self.metrics.forked()
        if forked:
            self.write_snapshot()  # an idle child shows up too

    def task_started(self, task_id: str, name: str) -> None:
        if self.process is not None:
            self.process.task_started(task_id, name)

    def task_finished(self, task_id: str, state: str | None) -> None:
        if self.process is None:
            return
        self.process.task_finished(task_id)
        with self._lock:
            self.tasks += 1
            if state == "FAILURE":
                self.failed_tasks += 1
        if self.forks or self.runner is not None:
            self.write_snapshot()
        # Celery's solo/threads: the command takes a fresh snapshot of this process instead

    def snapshot(self) -> dict[str, Any]:
        """This process's entry of the reply's ``processes``."""
        process = self.process
        if process is None:
            raise RuntimeError("this process runs no tasks")
        ledger = self.ledger
        pool = process.pool()
        rows, lost, held = ledger.snapshot(pool)
        sites = ledger.leak_sites(pool, self.cwd)
        with self._lock:
            tasks, failed = self.tasks, self.failed_tasks
        return {
            "pid": os.getpid(),
            "main": not self.forks,
            "started": self.started,
            "updated": time.time(),
            "tasks": tasks,
            "failed_tasks": failed,
            "pool": to_dict(census.pool_stats(pool)),
            "lost": lost - process.base_lost,
            "held": held,
            "opened": ledger.opened - process.base_opened,
            "inherited": process.inherited_connections,
            "checkouts": ledger.checkouts - process.base_checkouts,
            "returns": ledger.returns - process.base_returns,
            "connections": to_dict(rows),
            "leak_sites": to_dict(sites),
            "timeline": ledger.timeline_record(pool) if self.timeline else None,
        }

    def write_snapshot(self) -> None:
        if self.hostname is None or self.error is not None:
            return
        path = node_directory(self.hostname) / f"{os.getpid()}.json"
        # A tmp file per thread: a threads pool's threads finish tasks at once, and one's
        # os.replace would take the file another is writing (seen in CI as ENOENT).
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.snapshot(), sort_keys=True))
            os.replace(tmp, path)  # the control command never reads half a file
        except OSError as exc:
            self.cannot_write(path.parent, exc)

    def cannot_write(self, directory: Path, exc: OSError) -> None:
        """Say it once and stop trying: never a traceback per task in the project's worker."""
        self.error = f"cannot write its census to {directory}: {exc.strerror or exc}"
        _log.warning(
            "pooldoctor: this worker process %s; pooldoctor inspect will say so", self.error
        )

    def on_process_shutdown(self) -> None:
        if self.hostname is not None:
            (node_directory(self.hostname) / f"{os.getpid()}.json").unlink(missing_ok=True)

    # --- the control command (the worker's main process) --------------------------------------

    def snapshots(self, live_pids: set[int] | None = None) -> list[dict[str, Any]]:
        """The snapshots of this node's live processes: the files of its prefork children
        (``live_pids``, when the pool can tell, else every pid still running), or a fresh one of
        this process when it runs the tasks itself. (The metrics read them too.)"""
        processes: list[dict[str, Any]] = []
        if self.hostname is not None and (self.forks or self.runner is not None):
            for path in sorted(node_directory(self.hostname).glob("*.json")):
                if path.name == NODE_FILE:
                    continue  # the node's own file, not a process's snapshot
                pid = _pid_of(path)
                if not _alive(pid):
                    path.unlink(missing_ok=True)  # a dead child's
                    continue
                if (pid == self.main_pid and self.forks) or (
                    live_pids is not None and pid not in live_pids
                ):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    processes.append(json.loads(path.read_text()))
        if self.process is not None and not self.forks and self.runner is None:
            processes.append(self.snapshot())
        return processes

    def reply(self, live_pids: set[int] | None = None) -> dict[str, Any]:
        """The ``pooldoctor_census`` reply: the snapshot files of this node's live processes
        (``live_pids``, when the pool can tell, else every pid still running), plus a fresh
        snapshot of this process when it runs the tasks itself."""
        if self.error is not None:
            return {"error": self.error}
        processes = self.snapshots(live_pids)
        return {
            "schema": SCHEMA,
            "pooldoctor": __version__,
            "hostname": self.hostname,
            # A runner's node is read from its files by inspect: its pid is the node's main.
            "pid": self.main_pid if self.runner is not None and self.main_pid else os.getpid(),
            "pool": self.pool_kind,
            "concurrency": self.concurrency,
            "alias": self.alias,
            "tracking": self.tracking,
            **({"runner": self.runner} if self.runner is not None else {}),
            "processes": sorted(processes, key=lambda p: p.get("pid", 0)),
        }


# --- helpers -----------------------------------------------------------------------------------


def _pid_of(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: alive, not ours to judge
    return True


def _write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.stem}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader never sees half a file


def read_nodes(runner: str, destination: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``inspect --runner NAME``: the census of every node of that runner on this machine whose
    main process is alive, as a Celery node would answer it, by node name (all, or those
    named). A node whose files cannot be read says why."""
    replies: dict[str, dict[str, Any]] = {}
    root = snapshot_root()
    for path in sorted(root.glob(f"*/{NODE_FILE}")) if root.is_dir() else ():
        try:
            node = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = str(node.get("hostname", path.parent.name))
        if node.get("runner") != runner or (destination and name not in destination):
            continue
        if not _alive(int(node.get("pid", 0))):
            _forget(path.parent)  # a node killed with no chance to clean up: a past run's files
            continue
        installation = Installation(str(node.get("alias", "default")), bool(node.get("tracking")))
        installation.hostname, installation.main_pid = name, int(node["pid"])
        installation.pool_kind, installation.concurrency = node.get("pool"), node.get("concurrency")
        installation.runner = runner
        installation._forks = bool(node.get("forks"))
        replies[name] = installation.reply()
    return replies


def _forget(directory: Path) -> None:
    """Remove a dead node's files, those of its processes that are still alive excepted (an
    orphaned child keeps writing), and the directory once empty."""
    for path in directory.glob("*.json"):
        if path.name == NODE_FILE or not _alive(_pid_of(path)):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
