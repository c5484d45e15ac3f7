"""The worker ``simulate --runner django-tasks`` starts: ``python -m pooldoctor.hosts.tasks.worker``
loads the project with pooldoctor's overrides, adds a DatabaseBackend (alias ``pooldoctor``, the
run's queue) to its TASKS, enqueues the run's tasks through that backend's own ``enqueue`` (their
ids are the run's, through the backend's ``id_function`` option) and then calls the real
``db_worker`` (or ``db_async_worker``) management command.

Each task is labelled in Django's ``task_started`` signal, on the thread that runs it; its record
is written right after the worker loop's own ``close_old_connections()`` that follows the task
(the command module's name for it is wrapped), so the record sees what the runner's clean-up
left. ``python -m pooldoctor.hosts.tasks.worker purge`` deletes the run's queue rows.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.hosts.probe_worker import PROBE_NAME, ProbeWorker
from pooldoctor.hosts.tasks import BACKEND, SENT_FILE, TasksHost

SENT_TIMEOUT = 60.0
NEXT_IDS: list[uuid.UUID] = []
COMMANDS = {"db_worker": "django_tasks_db", "db_async_worker": "django_tasks_db_async"}


def configure(worker: ProbeWorker) -> None:
    """The project's settings with pooldoctor's overrides, its TASKS with the run's backend."""
    worker.configure()
    if worker.project.read_only:
        raise SystemExit("the queue is in the database: this run must allow writes")
    from django.conf import settings

    apps = list(settings.INSTALLED_APPS)
    for app in ("django_tasks_db", COMMANDS[worker.spec["pool"]]):
        if app not in apps:
            apps.append(app)  # the worker's command and model, as the project's worker has them
    settings.INSTALLED_APPS = apps
    settings.TASKS = {
        **getattr(settings, "TASKS", {}),
        BACKEND: {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            # The run's queue; "default" too, where a task is declared before it is re-queued.
            "QUEUES": [worker.spec["queue"], "default"],
            # The run's id for the row enqueue() creates: the records are named by it.
            "OPTIONS": {"id_function": lambda: NEXT_IDS.pop(0)},
        },
    }


def read_sent(worker: ProbeWorker) -> Any:
    """The run's tasks, once the parent wrote them (after the worker said it is ready)."""
    path = worker.directory / SENT_FILE
    deadline = time.monotonic() + SENT_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no tasks were sent within {SENT_TIMEOUT:g} s")
        time.sleep(0.02)
    return json.loads(path.read_text())


def subject(worker: ProbeWorker) -> tuple[Any, str]:
    """The task the worker runs (the project's own, or the probe through the subject) and its
    name for the ledger."""
    if worker.runs_project_task:
        target = worker.subject_task()
        return target, str(target.module_path)
    from pooldoctor.hosts.tasks import probe

    probe.RUN = worker.subject_task()
    return probe.probe, PROBE_NAME


def enqueue_all(worker: ProbeWorker, target: Any) -> None:
    """Every task of the run, through the backend's enqueue, on this process's writable session
    (the same database and settings the worker uses); the connection goes back to the pool
    before the worker starts."""
    from django.db import connections

    from pooldoctor.hosts.tasks.compat import task_backends

    wire = worker.spec["subject"]
    args, kwargs = list(wire.get("args", ())), dict(wire.get("kwargs", {}))
    queued = target.using(backend=BACKEND, queue_name=worker.spec["queue"])
    backend = task_backends[BACKEND]
    for entry in read_sent(worker):
        NEXT_IDS.append(uuid.UUID(entry["task_id"]))
        if worker.runs_project_task:
            backend.enqueue(queued, args, kwargs)
        else:
            backend.enqueue(queued, [entry["kind"]], {})
    connections[worker.alias].close()


def main() -> None:
    worker = ProbeWorker()
    spec = worker.spec
    if sys.argv[1:2] == ["purge"]:  # run by the parent, or its janitor once it died
        configure(worker)
        worker.setup()
        purge(worker)
        return
    lifeline.arm()  # dies with pooldoctor; its janitor purges the rows
    configure(worker)
    worker.setup()
    target, name = subject(worker)
    pool = spec["pool"]
    signals = __import__("pooldoctor.hosts.tasks.compat", fromlist=["x"]).worker_signals()
    # Finished tasks by the thread that sent task_finished: db_async_worker sends it (asend) and
    # calls its close_old_connections() on the same thread-sensitive thread of the loop iteration
    # that ran the task, so each iteration records only its own task, after its own clean-up.
    pending: dict[int, list[tuple[str, BaseException | None]]] = {}
    lock = threading.Lock()

    def started(sender: Any, task_result: Any = None, **kwargs: Any) -> None:
        task_id = uuid.UUID(str(task_result.id)).hex
        worker.task_started(task_id, name)

    def finished(sender: Any, task_result: Any = None, **kwargs: Any) -> None:
        task_id = uuid.UUID(str(task_result.id)).hex
        # db_worker sends it inside its except block on failure; db_async_worker from a thread
        # of its own, where the result's status says it.
        error = sys.exc_info()[1] or failure(task_result)
        with lock:
            pending.setdefault(threading.get_ident(), []).append((task_id, error))

    signals.task_started.connect(started, weak=False)
    signals.task_finished.connect(finished, weak=False)
    import importlib

    command = importlib.import_module(f"{COMMANDS[pool]}.management.commands.{pool}")
    close_old_connections = command.close_old_connections

    def close_then_record() -> None:
        close_old_connections()  # the worker's own clean-up first
        with lock:
            done = pending.pop(threading.get_ident(), [])
        for task_id, error in done:
            worker.task_finished(task_id, error=error)

    command.close_old_connections = close_then_record  # type: ignore[attr-defined]
    # The parent writes the tasks once we are ready; they are enqueued before the worker runs.
    argv = [pool, "--queue-name", spec["queue"], "--backend", BACKEND, "--interval", "0.05"]
    argv += ["--concurrency", str(spec["workers"])] if pool == "db_async_worker" else [
        "--no-startup-delay"]  # fmt: skip
    argv += ["--no-reload"]
    version = TasksHost().facts()
    # db_worker runs one task at a time (no --concurrency); db_async_worker up to --concurrency
    # at once on its event loop.
    concurrency = spec["workers"] if pool == "db_async_worker" else 1
    worker.ready({"task": name, "version": version.version, "concurrency": concurrency,
                  "command": "django-admin " + " ".join(argv),
                  "django_integration": TasksHost.django_integration(pool)})  # fmt: skip
    enqueue_all(worker, target)
    worker.process_started(forked=False)  # neither worker forks: tasks run in this process
    from django.core.management import call_command

    call_command(*argv)


def failure(task_result: Any) -> BaseException | None:
    """The task's error as its result records it, when it failed."""
    status = getattr(task_result, "status", None)
    if str(getattr(status, "value", status)) != "FAILED":
        return None
    errors = getattr(task_result, "errors", None) or []
    what = errors[-1].exception_class_path if errors else "the task failed"
    return RuntimeError(what)


def purge(worker: ProbeWorker) -> None:
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(queue_name=worker.spec["queue"], backend_name=BACKEND).delete()


if __name__ == "__main__":
    main()
