"""The live census in the project's Django Tasks workers, for ``pooldoctor inspect
--runner django-tasks``.

Call :func:`install` once, where the project's apps are ready (an ``AppConfig.ready()``)::

    import pooldoctor.tasks
    pooldoctor.tasks.install()

It connects to the Tasks framework's ``task_started`` and ``task_finished`` signals. A process
starts its census at the first task a queue worker runs (``db_worker``, ``db_async_worker``: any
backend but the in-process Immediate and Dummy ones), so a web process, which only enqueues or
runs ImmediateBackend tasks inside its requests, never keeps one. After every task the worker
rewrites its snapshot file, which ``inspect`` reads; the files go when the worker exits.

``db_worker`` and ``db_async_worker`` return the task's connection to the pool in their loop's
``close_old_connections()`` right after ``task_finished``: a snapshot written in the signal would
show it as held. So in those workers the snapshot is written after that call (the name is wrapped
in the command's module, which is the worker's only Django clean-up); in any other worker, in
``task_finished``.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import uuid
from typing import Any

from pooldoctor.hosts.live import TIMELINE, Installation

RUNNER = "django-tasks"
IN_PROCESS_BACKENDS = ("ImmediateBackend", "DummyBackend")
WORKER_MODULES = (
    "django_tasks_db.management.commands.db_worker",
    "django_tasks_db_async.management.commands.db_async_worker",
)
"""The worker commands whose loop calls ``close_old_connections()`` after each task."""
_INSTALLED: dict[str, Installation] = {}
_LOCK = threading.Lock()
_PENDING: dict[int, list[tuple[Installation, str, str]]] = {}
"""Finished tasks whose snapshot waits for the worker's clean-up, by the thread that runs it
(db_async_worker sends task_finished and cleans up on the same thread-sensitive thread)."""


def install(alias: str = "default", *, tracking: bool = True, timeline: int = TIMELINE) -> None:
    """Keep the census of the ``alias`` pool in every queue worker process of this project.
    ``tracking`` captures each checkout's stack (for leak sites); ``timeline``: how many of the
    latest checkouts each snapshot keeps (0: none). Calling it again is a no-op."""
    with _LOCK:
        if alias in _INSTALLED:
            return
        installation = Installation(alias, tracking, timeline)
        _INSTALLED[alias] = installation
    for signals in _signal_modules():
        signals.task_started.connect(_started(installation), weak=False)
        signals.task_finished.connect(_finished(installation), weak=False)


def _signal_modules() -> list[Any]:
    """Django's signals, and the backport's when it is installed (django-tasks-db before 0.13
    sends the backport's even on Django 6)."""
    import importlib
    import importlib.util

    found = []
    for name in ("django.tasks.signals", "django_tasks.signals"):
        if importlib.util.find_spec(name.rpartition(".")[0]) is not None:
            found.append(importlib.import_module(name))
    return found


def _worker_kind() -> str:
    """The management command this process runs (``db_worker``...), or ``worker``."""
    return next((arg for arg in sys.argv[1:] if arg.endswith("worker")), "worker")


def _concurrency(kind: str) -> int:
    """Tasks the worker runs at once: db_worker one; db_async_worker its ``--concurrency``
    (10 by default); 0 when unknown."""
    if kind == "db_worker":
        return 1
    if kind != "db_async_worker":
        return 0
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--concurrency=") else (
            args[i + 1] if arg == "--concurrency" and i + 1 < len(args) else "")  # fmt: skip
        if value.isdigit():
            return int(value)
    return 10


def _started(inst: Installation) -> Any:
    def on_started(sender: Any, task_result: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "__name__", "") in IN_PROCESS_BACKENDS:
            return  # a request's thread runs it: not a worker
        with _LOCK:
            if inst.hostname is None:
                kind = _worker_kind()
                name = f"{kind}.{os.getpid()}@{socket.gethostname()}"
                inst.start_node(name, kind, _concurrency(kind), forks=False, runner=RUNNER)
                atexit.register(_shutdown, inst)
        inst.task_started(_task_id(task_result), _task_name(task_result))

    return on_started


def _finished(inst: Installation) -> Any:
    def on_finished(sender: Any, task_result: Any = None, **kwargs: Any) -> None:
        if inst.hostname is None or getattr(sender, "__name__", "") in IN_PROCESS_BACKENDS:
            return
        status = getattr(task_result, "status", None)
        failed = sys.exc_info()[1] is not None or str(getattr(status, "value", status)) == "FAILED"
        state = "FAILURE" if failed else "SUCCESS"
        if _after_clean_up():
            with _LOCK:
                _PENDING.setdefault(threading.get_ident(), []).append(
                    (inst, _task_id(task_result), state))  # fmt: skip
        else:
            inst.task_finished(_task_id(task_result), state)

    return on_finished


def _after_clean_up() -> bool:
    """Whether this process runs a worker command whose ``close_old_connections()`` now writes
    the pending snapshots after it runs (wrapped here the first time; the loop looks the name
    up at each call)."""
    wrapped = False
    for name in WORKER_MODULES:
        module = sys.modules.get(name)
        original = getattr(module, "close_old_connections", None)
        if original is None:
            continue
        if not getattr(original, "pooldoctor", False):
            module.close_old_connections = _close_then_snapshot(original)  # type: ignore[union-attr]
        wrapped = True
    return wrapped


def _close_then_snapshot(close_old_connections: Any) -> Any:
    def close_then_snapshot(**kwargs: Any) -> None:
        try:
            close_old_connections(**kwargs)
        finally:
            with _LOCK:
                done = _PENDING.pop(threading.get_ident(), [])
            for inst, task_id, state in done:
                inst.task_finished(task_id, state)

    close_then_snapshot.pooldoctor = True  # type: ignore[attr-defined]
    return close_then_snapshot


def _task_id(task_result: Any) -> str:
    try:
        return uuid.UUID(str(task_result.id)).hex
    except ValueError:
        return str(task_result.id)


def _task_name(task_result: Any) -> str:
    task = getattr(task_result, "task", None)
    return str(getattr(task, "module_path", None) or getattr(task, "name", "task"))


def _shutdown(inst: Installation) -> None:
    inst.on_process_shutdown()
    inst.on_worker_shutdown()
