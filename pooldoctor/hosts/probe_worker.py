"""The worker side of ``simulate``, whatever the runner: what each real worker process does around
every task it runs, and the record it writes.

A runner's worker module (``hosts/celery/worker.py``, ``hosts/rq/worker.py``...) loads the
project as its real worker would, and calls a :class:`ProbeWorker` from the runner's own hooks:
:meth:`~ProbeWorker.process_started` in each process that runs tasks (a forked child sees there
what it inherited), :meth:`~ProbeWorker.task_started` on the thread that runs a task, and
:meth:`~ProbeWorker.task_finished` after the runner's own clean-up ran (its Django integration
closes connections there), which writes the task's record, the process's leak sites and its
timeline. A watchdog per process writes an ``exhausted`` record the moment a task waits with no
free pool slot, and a ``hung`` one past the task timeout: pooldoctor never sits out a pool
timeout.

Nothing here imports a runner's library; the spec comes from the file ``POOLDOCTOR_SIMULATE``
names (written by :mod:`pooldoctor.hosts.fleet`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooldoctor.core import census, echo, project
from pooldoctor.core.census import django_pool
from pooldoctor.core.model import to_dict
from pooldoctor.core.probes import get_mode
from pooldoctor.core.probes.task import ProbeFailure, make_probe_task, unawaited
from pooldoctor.core.project_tasks import load_subject_task
from pooldoctor.core.subjects import decorate, load_wrapper
from pooldoctor.core.worker_process import WorkerProcess, census_fields
from pooldoctor.hosts.inprocess.runner import EXHAUSTION_GRACE, WATCH_INTERVAL

TIMELINE_SPANS = 2000
"""Checkouts each process's timeline shows (the latest)."""
PROBE_NAME = "pooldoctor.probe"


class ChildState:
    """What one worker process knows about itself (reset in every forked child)."""

    def __init__(self, process: WorkerProcess | None = None) -> None:
        self.process = process
        """The inherited pool and the running tasks' labels (set when the process starts)."""
        self.opened_before = 0
        self.index = 0
        self.running: dict[str, float] = {}
        """Tasks running in this process (several at once in a threads pool) and their start."""
        self.written: set[str] = set()
        self.lock = threading.Lock()
        self.pid = os.getpid()


class ProbeWorker:
    """One simulate run's worker side, in one worker (and, copied by fork, in its children)."""

    def __init__(self, spec_path: str | None = None) -> None:
        path = spec_path or os.environ["POOLDOCTOR_SIMULATE"]
        self.spec: dict[str, Any] = json.loads(Path(path).read_text())
        self.directory = Path(self.spec["dir"])
        self.project = project.ProjectSpec.from_dict(self.spec["project"])
        self.alias = self.project.alias
        self.ledger = census.Ledger(self.alias, tracking=self.spec.get("tracking", True))
        self.state = ChildState()
        self.census = bool(self.spec.get("census", True))

    # --- loading the project ------------------------------------------------------------------

    def configure(self) -> None:
        """The project's settings with pooldoctor's overrides (its application_name, read-only
        sessions unless writes are allowed) and the echo that detects crossed replies, before any
        of the project's queries."""
        project.prepare_sys_path(self.project)
        os.environ["DJANGO_SETTINGS_MODULE"] = self.project.settings
        project.import_settings(self.project.settings)
        entry = project.database_settings(self.alias)
        project.apply_overrides(entry, self.project, self.spec["application_name"])
        echo.install(self.alias)  # before any query of the project's: inherited ones echo too

    def setup(self) -> None:
        """``django.setup()`` and the ledger; then every fork this process makes starts a child
        census (the runners that fork a process per job, or a pool of processes, all end up in
        ``os.fork``)."""
        import django

        django.setup()
        if self.census:
            self.ledger.install()

    def bootstrap(self) -> None:
        self.configure()
        self.setup()

    def watch_forks(self, on_child: Callable[[], None] | None = None) -> None:
        """Start a child's census in every process this one forks (``on_child`` runs after it:
        a runner's fix, applied where the runner's own hook would)."""

        def after_fork() -> None:
            self.process_started(forked=True)
            if on_child is not None:
                on_child()

        os.register_at_fork(after_in_child=after_fork)

    def warm_parent(self) -> None:
        """A query before the fork, as module-level code, ``AppConfig.ready()`` or a worker's
        start-up hook do; the connection goes back to the pool, which stays open."""
        from django.db import connections

        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        connections[self.alias].close()

    def discard_inherited_pool(self) -> None:
        """The fix pooldoctor recommends for an inherited pool, run to prove it measures clean."""
        from django.db import connections

        with contextlib.suppress(KeyError):
            connections[self.alias].close_pool()

    def subject_task(self) -> Any:
        """What the worker runs per task: the probe through a mode or the project's wrapper
        (called with the probe's kind of task), or the project's own task object (through its
        wrapper, for a bare async function)."""
        subject = self.spec["subject"]
        if subject["kind"] == "mode":
            return get_mode(subject["name"]).task(self.alias)
        if subject["kind"] == "task":
            return load_subject_task(subject)
        return decorate(subject["name"], load_wrapper(subject["name"]), make_probe_task(self.alias))

    @property
    def runs_project_task(self) -> bool:
        return bool(self.spec["subject"]["kind"] == "task")

    def ready(self, info: dict[str, Any]) -> None:
        """Tell the parent the worker is ready to take tasks (with what it found)."""
        path = self.directory / "ready.json"
        replace(path, json.dumps({"pid": os.getpid(), **info}))

    # --- each process, each task --------------------------------------------------------------

    def process_started(self, forked: bool) -> None:
        """Runs first in every process that runs tasks: what came from the parent?"""
        self.state = ChildState(WorkerProcess(self.ledger, self.alias, forked=forked))
        self.state.opened_before = self.ledger.opened
        if self.census:
            threading.Thread(target=self._watch, name="pooldoctor-watchdog", daemon=True).start()

    def task_started(self, task_id: str, name: str = PROBE_NAME) -> None:
        """On the thread that runs the task, before the task's own code."""
        if self.spec.get("kill_task_id") == task_id:
            os.kill(os.getpid(), signal.SIGKILL)  # chaos: a child dying mid-task, as OOM kills do
        if self.state.process is None or self.state.pid != os.getpid():
            # A runner whose hooks we could not reach before the first task (or a fork we did
            # not see): this process starts its census now.
            self.process_started(forked=self.state.pid != os.getpid())
        echo.CURRENT.set(task_id)  # the task's first query on each connection echoes its id
        assert self.state.process is not None
        self.state.process.task_started(task_id, name)
        self.state.running[task_id] = time.monotonic()

    def task_finished(self, task_id: str, *, error: BaseException | None = None,
                      retval: Any = None, state: str = "") -> None:  # fmt: skip
        """After the runner's own clean-up for the task: its record."""
        started = self.state.running.pop(task_id, time.monotonic())
        echo.CURRENT.set(None)
        error = error if error is not None else unawaited(retval, "the task")
        if self.state.process is not None:
            self.state.process.task_finished(task_id, ok=error is None and state != "FAILURE")
        self.write(task_id, {"state": state}, error, time.monotonic() - started)

    def _watch(self) -> None:
        """Write an 'exhausted' record the moment a task waits with no free slot (never the
        pool's timeout), and a 'hung' one past the task timeout."""
        starved_since: float | None = None
        state = self.state
        timeout = self.spec["task_timeout"]
        while state is self.state:
            time.sleep(WATCH_INTERVAL)
            running = dict(state.running)
            stats = census.pool_stats(django_pool(self.alias))
            if running and stats and stats.waiting and stats.free == 0:
                starved_since = starved_since or time.monotonic()
                if time.monotonic() - starved_since >= EXHAUSTION_GRACE:
                    detail = (
                        f"waited for a connection with 0 of {stats.max_size} pool slots free; "
                        f"it would have failed after the pool timeout ({stats.timeout:g} s)"
                    )
                    for task_id in running:
                        self.write(task_id, {"exhausted": detail}, TimeoutError(detail), None)
            else:
                starved_since = None
            now = time.monotonic()
            for task_id, started in running.items():
                if now - started > timeout:
                    detail = f"did not finish within {timeout:g} s"
                    self.write(task_id, {"hung": detail}, TimeoutError(detail), now - started)

    def write(self, task_id: str, extra: dict[str, Any], error: BaseException | None,
              seconds: float | None) -> None:  # fmt: skip
        state = self.state
        with state.lock:
            if task_id in state.written:
                return
            state.written.add(task_id)
            if not self.census:  # the benchmark's baseline: that the task ran, nothing more
                record = {"task_id": task_id, "pid": os.getpid(), "index": state.index,
                          "ok": error is None, **extra}  # fmt: skip
                state.index += 1
                replace(self.directory / "records" / f"{task_id}.json", json.dumps(record))
                return
            self._write_locked(state, task_id, extra, error, seconds)

    def _write_locked(self, state: ChildState, task_id: str, extra: dict[str, Any],
                      error: BaseException | None, seconds: float | None) -> None:  # fmt: skip
        echoed = echo.take(task_id)
        census.collect_garbage()
        pool = django_pool(self.alias)
        opened = self.ledger.opened - state.opened_before
        state.opened_before = self.ledger.opened
        fields = census_fields(self.ledger, pool, state.process, task_id, echoed, error)
        record = {
            "task_id": task_id,
            "pid": os.getpid(),
            "index": state.index,
            "ok": error is None,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "expected_error": isinstance(error, ProbeFailure),
            "seconds": round(seconds or 0.0, 4),
            "opened": opened,
            **fields,
            # A threads pool's threads each keep a connection: not a leak (verdict.judge).
            "task_threads": self.spec.get("task_threads", 1),
            **extra,
        }
        state.index += 1
        # Before the record: the parent stops the worker once every record is in, and must find
        # the sites of the census that record reports.
        stand_ins = self.spec["subject"]["kind"] == "mode"
        sites = self.ledger.leak_sites(pool, self.project.cwd, stand_ins=stand_ins)
        name = f"{os.getpid()}.json"
        replace(self.directory / "sites" / name, json.dumps(to_dict(sites), sort_keys=True))
        timeline = self.ledger.timeline_record(pool, latest=TIMELINE_SPANS)
        replace(self.directory / "timelines" / name, json.dumps(timeline))
        replace(self.directory / "records" / f"{task_id}.json", json.dumps(record, sort_keys=True))


def replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the parent never reads half a file


def resolve(spec: str) -> Any:
    """``MODULE:ATTR`` (``MODULE:ATTR()`` calls a factory) as an object."""
    if spec.endswith("()"):
        return load_wrapper(spec)
    import importlib

    module, _, attr = spec.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value
