"""The module a real ``celery worker`` loads (``-A pooldoctor.hosts.celery.worker``).

It loads the project's own Celery app (its signal handlers, its Django fix-up, the installed
Celery's behaviour), points it at pooldoctor's broker, registers the probe task through the
subject (a mode or the project's wrapper) and writes one record per task, from the worker process
that ran it, after every other ``task_postrun`` handler (Celery's Django fix-up included) ran.
Each task is labelled for the ledger (``name[task id]``) on the thread that runs it, and every
census also rewrites the process's leak sites (``sites/<pid>.json``): one file per worker process,
holding where its lost and pinned connections were checked out as of its latest census.

Nothing here runs outside a worker started by :mod:`pooldoctor.hosts.celery.fleet`; the spec comes
from the file named by ``POOLDOCTOR_SIMULATE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pooldoctor.core import census, echo, lifeline, project, readonly
from pooldoctor.core.census import django_pool
from pooldoctor.core.model import to_dict
from pooldoctor.core.probes import get_mode
from pooldoctor.core.probes.task import ProbeFailure, make_probe_task, unawaited
from pooldoctor.core.project_tasks import load_subject_task
from pooldoctor.core.subjects import decorate, load_wrapper
from pooldoctor.core.worker_process import WorkerProcess
from pooldoctor.hosts import get_host
from pooldoctor.hosts.celery.apps import find_app
from pooldoctor.hosts.celery.fleet import purge_queue
from pooldoctor.hosts.inprocess.runner import EXHAUSTION_GRACE, WATCH_INTERVAL

SPEC: dict[str, Any] = json.loads(Path(os.environ["POOLDOCTOR_SIMULATE"]).read_text())
# Before anything of the project's runs: if pooldoctor dies, delete this run's queue on the user's
# broker, then end this worker and its prefork children.
lifeline.arm(on_death=lambda: purge_queue(SPEC["celery_conf"]))
RECORDS = Path(SPEC["dir"]) / "records"
SITES = Path(SPEC["dir"]) / "sites"
TIMELINES = Path(SPEC["dir"]) / "timelines"
TIMELINE_SPANS = 2000
"""Checkouts each process's timeline shows (the latest)."""
PROJECT = project.ProjectSpec.from_dict(SPEC["project"])
ALIAS = PROJECT.alias
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


STATE = ChildState()
LEDGER = census.Ledger(ALIAS, tracking=SPEC.get("tracking", True))


def _pool() -> Any:
    return django_pool(ALIAS)


def _on_child_start(forked: bool = True, **kwargs: Any) -> None:
    """Runs first in every prefork child, before the project's own handlers: what came from the
    parent? (Also run once in the worker itself for pools that do not fork.)"""
    global STATE
    STATE = ChildState(WorkerProcess(LEDGER, ALIAS, forked=forked))
    STATE.opened_before = LEDGER.opened
    threading.Thread(target=_watch, name="pooldoctor-watchdog", daemon=True).start()


def _watch() -> None:
    """Write an 'exhausted' record the moment a task waits with no free slot (never the pool's
    timeout)."""
    starved_since: float | None = None
    while True:
        time.sleep(WATCH_INTERVAL)
        running = dict(STATE.running)
        stats = census.pool_stats(_pool())
        if running and stats and stats.waiting and stats.free == 0:
            starved_since = starved_since or time.monotonic()
            if time.monotonic() - starved_since >= EXHAUSTION_GRACE:
                detail = (
                    f"waited for a connection with 0 of {stats.max_size} pool slots free; it "
                    f"would have failed after the pool timeout ({stats.timeout:g} s)"
                )
                for task_id in running:
                    _write(task_id, {"exhausted": detail}, TimeoutError(detail), None)
        else:
            starved_since = None
        now = time.monotonic()
        for task_id, started in running.items():
            if now - started > SPEC["task_timeout"]:
                detail = f"did not finish within {SPEC['task_timeout']:g} s"
                _write(task_id, {"hung": detail}, TimeoutError(detail), now - started)


def _on_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    if SPEC.get("kill_task_id") == task_id:
        os.kill(os.getpid(), signal.SIGKILL)  # chaos: a child dying mid-task, as OOM kills do
    echo.CURRENT.set(task_id)  # the task's first query on each connection echoes its id
    if STATE.process is not None:
        STATE.process.task_started(task_id, getattr(task, "name", PROBE_NAME))
    STATE.running[task_id] = time.monotonic()


def _on_postrun(task_id: str = "", args: Any = (), state: str = "", retval: Any = None,
                **kwargs: Any) -> None:  # fmt: skip
    started = STATE.running.pop(task_id, time.monotonic())
    echo.CURRENT.set(None)
    error = retval if isinstance(retval, BaseException) else unawaited(retval, "the task")
    _task_finished(task_id, ok=error is None and state != "FAILURE")
    _write(task_id, {"state": state}, error, time.monotonic() - started)


def _task_finished(task_id: str, ok: bool | None = None) -> None:
    if STATE.process is not None:
        STATE.process.task_finished(task_id, ok=ok)


def _write(task_id: str, extra: dict[str, Any], error: BaseException | None,
           seconds: float | None) -> None:  # fmt: skip
    with STATE.lock:
        if task_id in STATE.written:
            return
        STATE.written.add(task_id)
        _write_locked(task_id, extra, error, seconds)


def _write_locked(task_id: str, extra: dict[str, Any], error: BaseException | None,
                  seconds: float | None) -> None:  # fmt: skip
    echoed = echo.take(task_id)
    census.collect_garbage()
    pool = _pool()
    process = STATE.process
    inherited_id = process.inherited_pool_id if process else None
    rows, lost, held = LEDGER.snapshot(pool)
    # Process-wide: in a threads pool a refusal may be recorded with a neighbour task's census
    # (the subject, which PD206 names, is the same).
    refused, direct = readonly.take()
    opened = LEDGER.opened - STATE.opened_before
    STATE.opened_before = LEDGER.opened
    record = {
        "task_id": task_id,
        "pid": os.getpid(),
        "index": STATE.index,
        "ok": error is None,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "expected_error": isinstance(error, ProbeFailure),
        "sqlstate": readonly.sqlstate_of(error),
        "refused": to_dict(refused),
        "direct": to_dict(direct),
        "seconds": round(seconds or 0.0, 4),
        "token": task_id,
        "echo": echoed[0] if echoed else None,
        "backend_pid": echoed[1] if echoed else None,
        "opened": opened,
        "inherited_pool": inherited_id is not None,
        "inherited_pool_in_use": pool is not None and id(pool) == inherited_id,
        "inherited_connections": process.inherited_connections if process else 0,
        "pool": to_dict(census.pool_stats(pool)),
        "lost": lost,
        "held": held,
        "connections": [to_dict(r) for r in rows],
        **extra,
    }
    STATE.index += 1
    # Before the record: the parent stops the worker once every record is in, and must find the
    # sites of the census that record reports.
    sites = LEDGER.leak_sites(pool, PROJECT.cwd, stand_ins=SPEC["subject"]["kind"] == "mode")
    _replace(SITES / f"{os.getpid()}.json", json.dumps(to_dict(sites), sort_keys=True))
    timeline = LEDGER.timeline_record(pool, latest=TIMELINE_SPANS)
    _replace(TIMELINES / f"{os.getpid()}.json", json.dumps(timeline))
    _replace(RECORDS / f"{task_id}.json", json.dumps(record, sort_keys=True))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the parent never reads half a file


def _load_app() -> tuple[Any, str]:
    """The Celery app the worker runs, and how it was found: ``--app``, else the project's own
    (the one its settings package imports, as Celery's Django guide lays a project out, or its
    ``celery`` module), else one built from the settings' ``CELERY_*``."""
    from celery import Celery

    if SPEC["app"]:
        found = load_wrapper(SPEC["app"]) if SPEC["app"].endswith("()") else _attr(SPEC["app"])
        if not isinstance(found, Celery):
            raise SystemExit(f"--app {SPEC['app']} is a {type(found).__name__}, not a Celery app")
        return found, f"--app {SPEC['app']}"
    project_app, where = find_app(PROJECT.settings)
    if project_app is not None:
        return project_app, f"the project's app {where}"
    app = Celery("pooldoctor")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app, "none found in the project: one built from the settings' CELERY_*"


def _attr(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def _set_fixup(app: Any, mode: str) -> bool:
    """Django fix-up on, off, or as the app's creation left it; returns whether it is on."""
    from celery import signals

    fixups = [f for f in getattr(app, "_fixups", []) if type(f).__name__ == "DjangoFixup"]
    if mode == "on" and not fixups:
        from celery.fixups.django import DjangoFixup

        app._fixups.append(DjangoFixup(app).install())
        return True
    if mode == "off":
        for fixup in fixups:
            signals.import_modules.disconnect(fixup.on_import_modules, sender=app)
            signals.worker_init.disconnect(dispatch_uid=getattr(fixup, "_worker_init_uid", None))
            signals.worker_init.disconnect(fixup.on_worker_init)
            app._fixups.remove(fixup)
        return False
    return bool(fixups) or mode == "on"


def _subject_task() -> Any:
    """What the worker runs per task: the probe through a mode or the project's wrapper, or the
    project's own task (through its wrapper, for a bare async function)."""
    subject = SPEC["subject"]
    if subject["kind"] == "mode":
        return get_mode(subject["name"]).task(ALIAS)
    if subject["kind"] == "task":
        return load_subject_task(subject)
    return decorate(subject["name"], load_wrapper(subject["name"]), make_probe_task(ALIAS))


def _bootstrap() -> Any:
    from celery import signals

    project.prepare_sys_path(PROJECT)
    os.environ["DJANGO_SETTINGS_MODULE"] = PROJECT.settings
    project.import_settings(PROJECT.settings)
    entry = project.database_settings(ALIAS)
    project.apply_overrides(entry, PROJECT, SPEC["application_name"])
    # Ours first: it must see the child exactly as forked, before the project's handlers.
    signals.worker_process_init.connect(_on_child_start, weak=False)
    echo.install(ALIAS)  # before any query of the project's: inherited connections echo too
    app, found = _load_app()
    fixup = _set_fixup(app, SPEC["django_fixup"])
    conf = dict(SPEC["celery_conf"])
    namespace = getattr(app, "namespace", None)
    if namespace:
        # With config_from_object(namespace="CELERY") a CELERY_BROKER_URL setting outranks
        # broker_url (Celery 5.5): set both spellings.
        conf.update({f"{namespace}_{key.upper()}": value for key, value in conf.items()})
    app.conf.update(conf)
    import django

    django.setup()
    LEDGER.install()
    run = _subject_task()
    host = get_host("celery")
    if host.owns(run) and run.name in app.tasks:
        name = run.name  # the project's task, registered in the app the worker runs
    else:
        name = PROBE_NAME
        app.task(name=PROBE_NAME, ignore_result=True)(run)

    def on_worker_init(**kwargs: Any) -> None:
        # Connected now, so that they run after the fix-up's handlers (installed at worker_init).
        signals.task_prerun.connect(_on_prerun, weak=False)
        signals.task_postrun.connect(_on_postrun, weak=False)
        if SPEC["pool"] != "prefork":
            _on_child_start(forked=False)  # threads, solo, gevent: tasks run in this process

    def on_ready(**kwargs: Any) -> None:
        facts = host.facts(app)
        info = {"task": name, "celery": facts.version, "django_fixup": fixup, "app": found,
                "signal_handlers": list(facts.handlers), "django_integration": facts.django,
                "pid": os.getpid()}  # fmt: skip
        ready = Path(SPEC["dir"]) / "ready.json"
        ready.with_suffix(".tmp").write_text(json.dumps(info))
        ready.with_suffix(".tmp").replace(ready)  # the parent polls for it: never half a file

    def discard_inherited_pool(**kwargs: Any) -> None:
        # The fix pooldoctor recommends for an inherited pool, run to prove it measures clean.
        from django.db import connections

        with contextlib.suppress(KeyError):
            connections[ALIAS].close_pool()

    signals.worker_init.connect(on_worker_init, weak=False)
    if SPEC.get("apply_fix"):
        signals.worker_process_init.connect(discard_inherited_pool, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    if SPEC["warm_parent"]:
        # A query before the fork, as module-level code, AppConfig.ready() or worker_init do.
        from django.db import connections

        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
        connections[ALIAS].close()
    return app


app = _bootstrap()
