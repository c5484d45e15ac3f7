"""The module a ``simulate --runner huey`` consumer runs: ``python -m pooldoctor.hosts.huey.worker
-k thread|process -w N ...``.

It loads the project as ``manage.py run_huey`` does (its settings, with the ``HUEY`` setting
pointed at the run's queue; ``django.setup()``; djhuey's instance built from it), registers the
probe as a ``db_task`` (djhuey's Django integration, the default path of a djhuey project) or
finds the project's own task, and runs djhuey's real ``run_huey`` command with the run's options.
Per task, on the thread that runs it: the ledger's label at ``SIGNAL_EXECUTING`` (before the
project's pre-execute hooks and the task), the record after everything Huey and the project do
once the task returned: djhuey's ``close_db`` runs inside the task; ``SIGNAL_COMPLETE`` comes
after every post-execute hook, and a failed task's last hook is our post-execute hook,
registered after the project's. Each worker process starts its census in an ``on_startup`` hook
put first (with ``process``, the consumer forks after the project is loaded); the fix for an
inherited pool is applied there too, as a project would.

Nothing here runs outside a consumer started by :func:`pooldoctor.hosts.fleet.run_runner_fleet`.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.hosts import get_host
from pooldoctor.hosts.huey import OWN_KEYS, django_integration, purge_keys
from pooldoctor.hosts.probe_worker import ProbeWorker

W = ProbeWorker()
SPEC = W.spec
# Before anything of the project's runs: if pooldoctor dies, delete this run's keys on the user's
# Redis, then end this consumer and its worker processes.
lifeline.arm(on_death=lambda: purge_keys(SPEC["huey"]))
FORKS = SPEC["pool"] == "process"
PROBE = "pooldoctor_probe"
_LOCK = threading.Lock()
_STARTED: set[int] = set()
"""The pids whose hooks are in place (``on_startup`` runs once per worker thread)."""
_VALUES: dict[str, Any] = {}
"""A task's return value, from the post-execute hook to ``SIGNAL_COMPLETE``."""


def configure_huey() -> None:
    """The project's ``HUEY`` setting on the run's storage: its name, class and connection are
    the run's, never in immediate mode (as a consumer requires); the rest (results, compression,
    consumer options) stays the project's. Before djhuey reads it."""
    from django.conf import settings

    project = getattr(settings, "HUEY", None)
    conf = (
        {k: v for k, v in project.items() if k not in OWN_KEYS} if isinstance(project, dict) else {}
    )
    settings.HUEY = {**conf, **SPEC["huey"], "immediate": False}


def register(huey: Any) -> str:
    """The task the run sends, by its name in Huey's registry: the project's own, or the probe
    (through the mode or the project's wrapper) as a ``db_task``."""
    from huey.contrib.djhuey import db_task

    run = W.subject_task()
    if not get_host("huey").owns(run):
        run = db_task(name=PROBE)(run)
    if run.huey is not huey:
        raise SystemExit(f"{SPEC['subject']['name']} is a task of another Huey instance than "
                         "djhuey's (settings.HUEY): run_huey would never run it")  # fmt: skip
    return str(huey._registry.task_to_string(run.task_class))


def main() -> None:
    W.configure()
    configure_huey()
    W.setup()
    from django.core.management import call_command
    from huey import signals
    from huey.contrib.djhuey import HUEY
    from huey.contrib.djhuey.management.commands.run_huey import Command

    name = register(HUEY)
    options = sys.argv[1:]
    command = shlex.join(["django-admin", "run_huey", *options])

    def label(signal: str, task: Any, *args: Any) -> None:
        W.task_started(task.id, HUEY._registry.task_to_string(type(task)))

    def post_execute(task: Any, value: Any, exc: BaseException | None) -> None:
        if exc is not None:  # the last thing Huey does for a failed task that any hook sees
            W.task_finished(task.id, error=exc, state="FAILURE")
        else:
            _VALUES[task.id] = value

    def finished(signal: str, task: Any, *args: Any) -> None:
        if signal == signals.SIGNAL_COMPLETE:
            W.task_finished(task.id, retval=_VALUES.pop(task.id, None), state="SUCCESS")
        elif signal == signals.SIGNAL_INTERRUPTED:
            W.task_finished(task.id, error=KeyboardInterrupt("interrupted"), state="FAILURE")

    def on_startup() -> None:
        """First in every worker (thread or process) of the consumer."""
        with _LOCK:
            if os.getpid() in _STARTED:
                return
            _STARTED.add(os.getpid())
            if FORKS:
                W.process_started(forked=True)
                if SPEC["apply_fix"]:
                    W.discard_inherited_pool()  # what FIX_CODE does, in the same hook
            # Registered now, after the project's (its tasks modules are loaded by run_huey):
            # they run last.
            HUEY.post_execute(name="pooldoctor")(post_execute)
            HUEY.signal()(finished)
            W.ready({"task": name, "version": get_host("huey").version(), "command": command,
                     "django_integration": django_integration(),
                     "serializer": {"compression": HUEY.serializer.comp,
                                    "use_zlib": HUEY.serializer.use_zlib}})  # fmt: skip

    # Specific receivers run before the "any" ones: the label is on before the project's hooks.
    HUEY.signal(signals.SIGNAL_EXECUTING)(label)
    # First of the start-up hooks (a dict in registration order): the census must see the
    # process as forked, before the project's own hooks.
    HUEY._startup = {"pooldoctor": on_startup, **HUEY._startup}
    if SPEC["warm_parent"]:
        W.warm_parent()
    if not FORKS:
        W.process_started(forked=False)  # threads: the tasks run in this process
    call_command(Command(), *options)


if __name__ == "__main__":
    main()
