"""The worker side of ``pooldoctor inspect``: one line in the project's Celery module.

    import pooldoctor.celery
    pooldoctor.celery.install(app)

Nothing happens until a worker starts: the module that calls :func:`install` is imported by web
processes too, and they are left alone. In a worker, every process that runs tasks (each prefork
child, or the worker itself for the solo, threads, gevent and eventlet pools) keeps a
:class:`pooldoctor.core.census.Ledger` of the alias's connections, labels each task
``name[task id]``
around its run, and after each task writes its snapshot to
``<tempdir>/pooldoctor-inspect/<node name>/<pid>.json`` (written whole, then renamed). The
remote-control inspect command ``pooldoctor_census`` answers from those files, in the worker's main
process, without touching any connection: ``app.control.broadcast("pooldoctor_census",
reply=True)``.

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

SCHEMA = 1
COMMAND = "pooldoctor_census"
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
        self.metrics: Any = None
        """Its :class:`pooldoctor.hosts.celery.metrics.Exporter`, when install() was given a
        metrics port or text file."""

    @property
    def forks(self) -> bool:
        return self.pool_kind == "prefork"

    # --- the worker's main process -----------------------------------------------------------

    def on_worker_init(self, worker: Any) -> None:
        self.hostname = str(worker.hostname)
        self.main_pid = os.getpid()
        self.pool_kind = pool_kind(worker.pool_cls)
        self.concurrency = int(worker.concurrency or 0)
        self.cwd = os.getcwd()
        self.ledger.install()
        directory = node_directory(self.hostname)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for path in directory.glob("*.json"):  # a previous run's, killed before its cleanup
                if not _alive(_pid_of(path)):
                    path.unlink(missing_ok=True)
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
        if self.forks:
            self.write_snapshot()
        # solo/threads: the command takes a fresh snapshot of this very process instead

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
        tmp = path.with_name(f".{path.stem}.tmp")
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
        if self.hostname is not None and self.forks:
            for path in sorted(node_directory(self.hostname).glob("*.json")):
                pid = _pid_of(path)
                if not _alive(pid):
                    path.unlink(missing_ok=True)  # a dead child's
                    continue
                if pid == self.main_pid or (live_pids is not None and pid not in live_pids):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    processes.append(json.loads(path.read_text()))
        if self.process is not None and not self.forks:
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
            "pid": os.getpid(),
            "pool": self.pool_kind,
            "concurrency": self.concurrency,
            "alias": self.alias,
            "tracking": self.tracking,
            "processes": sorted(processes, key=lambda p: p.get("pid", 0)),
        }


_INSTALLED: dict[int, Installation] = {}
"""By ``id(app)``: the apps :func:`install` was called for in this process."""
_ACTIVE: Installation | None = None
"""The one whose worker runs in this process (set at worker_init, inherited by the children)."""


def install(
    app: Any,
    *,
    alias: str = "default",
    tracking: bool = True,
    timeline: int = TIMELINE,
    metrics_port: int | None = None,
    metrics_addr: str = "0.0.0.0",
    metrics_textfile: str | os.PathLike[str] | None = None,
) -> None:
    """Make ``app``'s workers keep a census of ``alias``'s connections and answer
    ``pooldoctor_census``. ``tracking`` captures each checkout's stack (for leak sites);
    without it only counts are kept. ``timeline``: how many of the latest checkouts each
    snapshot keeps for the HTML report's timeline (0: none). Calling it again for the same app
    changes nothing.

    ``metrics_port``: the worker's main process serves the census as Prometheus metrics on
    ``http://metrics_addr:metrics_port/metrics`` (0: any free port, logged);
    ``metrics_textfile``: it keeps that file (``*.prom``, for node_exporter's textfile collector)
    up to date instead, or as well. Both need prometheus-client (``pip install
    'pooldoctor[metrics]'``)."""
    if id(app) in _INSTALLED:
        return
    installation = Installation(alias, tracking, timeline)
    if metrics_port is not None or metrics_textfile is not None:
        from pooldoctor.hosts.celery import metrics

        installation.metrics = metrics.Exporter(
            installation, port=metrics_port, addr=metrics_addr, textfile=metrics_textfile
        )
    _INSTALLED[id(app)] = installation
    _connect_signals()


def metrics_collector(app: Any) -> Any:
    """A prometheus-client collector of ``app``'s worker node's census, to register in a registry
    the project already serves (``registry.register(pooldoctor.celery.metrics_collector(app))``):
    it reports the node whose worker runs in this process, nothing elsewhere."""
    found = _INSTALLED.get(id(app))
    if found is None:
        raise LookupError("call pooldoctor.celery.install(app) before metrics_collector(app)")
    from pooldoctor.hosts.celery import metrics

    return metrics.NodeCollector(found)


def pool_kind(pool_cls: Any) -> str:
    """prefork, solo, threads, gevent, eventlet... from the worker's pool class (or its name)."""
    name = pool_cls if isinstance(pool_cls, str) else getattr(pool_cls, "__module__", "")
    last = str(name).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    return {"thread": "threads", "processes": "prefork"}.get(last, last)


# --- signals -----------------------------------------------------------------------------------

_CONNECTED = False


def _connect_signals() -> None:
    global _CONNECTED
    if _CONNECTED:
        return
    from celery import signals

    signals.worker_init.connect(_on_worker_init, weak=False)
    # Connected now, at import of the project's Celery module, so that it runs before the Django
    # fix-up's worker_process_init handler: the child is seen as forked, pool and all.
    signals.worker_process_init.connect(_on_worker_process_init, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    _CONNECTED = True


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    global _ACTIVE
    found = _INSTALLED.get(id(getattr(sender, "app", None)))
    if found is None:
        return
    _ACTIVE = found
    # Registered here, not at install(): a web process importing the Celery module never loads
    # celery.worker; the pidbox that dispatches it starts after worker_init.
    _register_command()
    found.on_worker_init(sender)
    from celery import signals

    # Connected here so that they run after the fix-up's own (connected by then): the snapshot
    # sees the connections as the fix-up's cleanup left them.
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)


def _on_worker_process_init(**kwargs: Any) -> None:
    if _ACTIVE is not None and _ACTIVE.forks:
        _ACTIVE.start_process(forked=True)


def _on_task_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.task_started(task_id, str(getattr(task, "name", "task")))


def _on_task_postrun(task_id: str = "", state: str | None = None, **kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.task_finished(task_id, state)


def _on_worker_process_shutdown(**kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.on_process_shutdown()


def _on_worker_shutdown(**kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.on_worker_shutdown()


def _register_command() -> None:
    from celery.worker.control import Panel, inspect_command

    if COMMAND in Panel.data:
        return

    @inspect_command(name=COMMAND)
    def pooldoctor_census(state: Any, **kwargs: Any) -> dict[str, Any]:
        """pooldoctor's census of this worker's processes (pooldoctor inspect)."""
        found = _INSTALLED.get(id(getattr(state, "app", None))) or _ACTIVE
        if found is None:
            return {"error": "pooldoctor.celery.install() was not called for this app"}
        return found.reply(_pool_pids(state))


def _pool_pids(state: Any) -> set[int] | None:
    """The pids of the worker pool's processes, when the pool says (prefork does)."""
    with contextlib.suppress(Exception):
        info = state.consumer.pool.info
        pids = info.get("processes") if isinstance(info, dict) else None
        if pids:
            return {int(pid) for pid in pids}
    return None


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
