"""Django's Tasks framework (``django.tasks`` from Django 6.0, the ``django-tasks`` backport
before it) as a host, with django-tasks-db's ``db_worker`` and django-tasks-db-async's
``db_async_worker`` as its workers.

``check --task`` runs a task the way its worker does: a task on an ``ImmediateBackend`` through
the backend's own ``enqueue`` (in this thread, with its signals); any other task as ``db_worker``
runs it (``task_started``, ``Task.call``, which wraps an ``async def`` in ``async_to_sync``,
``task_finished``, and the worker loop's ``close_old_connections()`` before and after). The
ImmediateBackend has no worker: its task runs in the enqueuing thread, a request's, so the check
wraps it in the request's clean-up (``close_old_connections()`` before and after, as Django's
request_started/request_finished handlers do). Neither worker forks: there is no fork hazard.

The same async task measures differently in the two workers: ``db_worker`` runs it through
``async_to_sync``, a fresh event loop per task whose default executor thread ends with it, so a
``sync_to_async(thread_sensitive=False)`` connection is lost per task; ``db_async_worker`` keeps
one loop for its life, whose default executor threads live on and keep their connections
checked out: pinned, one per executor thread. ``db_async_worker`` runs up to ``--concurrency``
tasks at once and each record is the process's census after its own task's clean-up, so with
more than one at a time it also counts what concurrent tasks hold then: ``--workers 1`` makes it
exact.

The queue lives in the project's database: ``simulate`` refuses a read-only run, and the worker
writes its rows on the examined alias, which is writable exactly when the run allows writes
(``ProjectSpec.read_only`` is False for ``--database embedded`` and ``--allow-writes``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pooldoctor.hosts.base import HostFacts, RunnerHost

BACKEND = "pooldoctor"
"""The alias of the DatabaseBackend a simulate worker adds to the project's TASKS."""
SENT_FILE = "sent.json"
"""The run's tasks, written by :meth:`TasksHost.enqueue` for the worker, which enqueues them."""
PURGE_TIMEOUT = 30.0
WORKER_MODULE = "pooldoctor.hosts.tasks.worker"
DJANGO_INTEGRATION = (
    "{worker} runs {how}; its loop calls close_old_connections() before claiming a task and "
    "after each one, on {thread}; task_started/task_finished close nothing"
)
IMMEDIATE = (
    "ImmediateBackend runs the task in the enqueuing thread (a request's: its request_finished "
    "closes that thread's connection); task_started/task_finished close nothing"
)


def task_classes() -> tuple[type, ...]:
    """Django's Task class and the backport's, those already imported (never import one)."""
    found: list[type] = []
    for module in ("django.tasks.base", "django_tasks.base"):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(getattr(loaded, "Task", None), type):
            found.append(loaded.Task)
    return tuple(found)


def signals_for(task: Any) -> Any:
    """The module holding the task_started/task_finished its backends send: Django's own for a
    ``django.tasks`` Task, the backport's for a ``django_tasks`` one."""
    module = "django_tasks" if type(task).__module__.startswith("django_tasks") else "django.tasks"
    return importlib.import_module(f"{module}.signals")


def distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def worker_version() -> str:
    """django-tasks-db's version (the worker), or ``not installed``."""
    return distribution_version("django-tasks-db")


class TasksHost(RunnerHost):
    name = "tasks"
    runner_name = "django-tasks"
    title = "Django's Tasks"
    # Django's own from 6.0; simulate needs the worker (django-tasks-db) too, checked in prepare.
    distribution = "django"
    pools = ("db_worker", "db_async_worker")
    forking = frozenset()
    uses_broker = False

    def task_threads(self, pool: str, workers: int) -> int:
        return workers if pool == "db_async_worker" else 1  # its concurrency

    def owns(self, obj: Any) -> bool:
        classes = task_classes()
        return bool(classes) and isinstance(obj, classes)

    def refusal(self, task: Any) -> str | None:
        return None  # Task.call runs an async def through async_to_sync: its code always runs

    def signature_target(self, task: Any) -> Any:
        if getattr(task, "takes_context", False):
            # The worker passes the context first: the project's arguments bind to the rest.
            signature = inspect.signature(task.func)
            params = list(signature.parameters.values())[1:]
            func = task.func

            def target(*args: Any, **kwargs: Any) -> Any:
                return func(None, *args, **kwargs)

            target.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
            return target
        return task.func

    def runner(self, task: Any) -> Callable[..., Any]:
        """The task once per call, in this thread: through an ImmediateBackend's ``enqueue`` when
        that is its backend, else as ``db_worker``'s ``run_task`` and loop run it (no queue row:
        the run may be read-only)."""
        from django.db import close_old_connections

        from pooldoctor.hosts.tasks import running

        backend = task.get_backend()
        if type(backend).__name__ == "ImmediateBackend":
            return running.immediate(task, signals_for(task), close_old_connections)
        return running.like_db_worker(task, signals_for(task), close_old_connections)

    def facts(self, app: Any = None) -> HostFacts:
        version = self.version()
        if not self.installed():
            return super().facts(app)
        worker = worker_version()
        backport = "" if importlib.util.find_spec("django.tasks") else (
            f", django-tasks {distribution_version('django-tasks')} (the backport)")  # fmt: skip
        return HostFacts(
            name=self.name,
            version=f"Django {version}{backport}, django-tasks-db {worker}",
            concurrency="db_worker: one task at a time, in its main thread (no fork)",
            django=self.django_integration("db_worker"),
        )

    @staticmethod
    def django_integration(pool: str) -> str:
        if pool == "db_async_worker":
            return DJANGO_INTEGRATION.format(
                worker="db_async_worker", how="async tasks on one event loop (Task.acall)",
                thread="a sync_to_async thread (thread-sensitive)")  # fmt: skip
        return DJANGO_INTEGRATION.format(
            worker="db_worker", how="one task at a time (Task.call: async_to_sync for an async "
            "def)", thread="the thread that ran the task")  # fmt: skip

    # --- simulate ---------------------------------------------------------------------------

    def check_broker(self, url: str) -> None:
        pass  # no broker: the queue is the project's database

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        from pooldoctor.errors import MissingExtraError

        module = "django_tasks_db_async" if spec["pool"] == "db_async_worker" else "django_tasks_db"
        if importlib.util.find_spec(module) is None:
            package = module.replace("_", "-")
            raise MissingExtraError(
                f"--runner django-tasks --pool {spec['pool']} needs {package}, which is not "
                "installed", f"pip install {package}")  # fmt: skip
        return {"backend": BACKEND}

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        return [sys.executable, "-m", WORKER_MODULE]

    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """The worker enqueues the run's tasks itself, through the backend's own ``enqueue``, on
        its own writable session to the same database, before it takes any: here they are only
        written down for it."""
        import json

        path = Path(spec["dir"]) / SENT_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(list(sent)))
        tmp.replace(path)

    def purges(self, spec: Mapping[str, Any]) -> bool:
        # On the throwaway embedded server nothing is left behind; on the user's database
        # (--allow-writes) the run's rows go.
        return bool(spec["project"].get("allow_writes"))

    def purge(self, spec: Mapping[str, Any]) -> None:
        """Delete the rows of the run's queue, from a short process that loads the project as the
        worker does (this runs from the janitor too, where Django is not set up)."""
        directory = Path(spec["dir"])
        spec_path = directory / "spec.json"
        # Never raises: the run's report matters more than its queue rows.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [sys.executable, "-m", WORKER_MODULE, "purge"],
                cwd=spec["project"]["cwd"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=PURGE_TIMEOUT,
                env={**os.environ, "POOLDOCTOR_SIMULATE": str(spec_path)},
            )  # fmt: skip
