"""What simulate's django-q cluster runs: ``python -m pooldoctor.hosts.django_q.worker``.

It loads the project as ``manage.py qcluster`` does (its settings, with ``Q_CLUSTER`` pointed at
the run's queue on the run's Redis; ``django.setup()``), then runs django-q's own ``qcluster``
command: the sentinel it forks forks the workers. pooldoctor's hooks are django-q's signals:
``post_spawn`` (first thing in every worker: the census sees the process as forked, and the fix
for an inherited pool runs there, as a project's receiver would), ``pre_execute`` (after the
worker's ``close_old_connections()``, before the task; put first) and ``post_execute_in_worker``
(the last thing the worker does for a task: django-q closes nothing after it; connected last).

The cluster's monitor saves results in the project's database (``django_q_task``): failures
always, whatever ``save_limit`` says. The run's results are not saved anywhere: its monitor's
``save_task``/``save_cached`` are replaced, so its workers stay read-only and the project's
tables untouched. The cluster's main process also sends the run's tasks (``async_task()``, with
the project's settings), once :meth:`DjangoQHost.enqueue` hands them over.

Nothing here runs outside a cluster started by :mod:`pooldoctor.hosts.fleet`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.hosts.django_q import (
    OWN_KEYS,
    PROBE_PATH,
    SEND_FILE,
    SENT_FILE,
    DjangoQHost,
    first_receiver,
    purge_keys,
    task_label,
)
from pooldoctor.hosts.fleet import READY_TIMEOUT
from pooldoctor.hosts.probe_worker import PROBE_NAME, ProbeWorker, replace

W = ProbeWorker()
SPEC = W.spec
# Before anything of the project's runs: if pooldoctor dies, delete this run's keys on the user's
# Redis, then end the cluster.
lifeline.arm(on_death=lambda: purge_keys(SPEC["broker"], SPEC["queue"]))
COMMAND = "manage.py qcluster"


class TaskFailed(Exception):
    """What django-q's worker keeps of a project task's exception: its text and traceback."""


def configure_cluster() -> None:
    """The project's ``Q_CLUSTER`` with the run's entries (before django_q's conf reads it)."""
    from django.conf import settings

    project = getattr(settings, "Q_CLUSTER", None)
    conf = (
        {k: v for k, v in project.items() if k not in OWN_KEYS} if isinstance(project, dict) else {}
    )
    settings.Q_CLUSTER = {**conf, **SPEC["q_cluster"]}
    # qcluster's other way to name the cluster, which would take the project's queue
    os.environ.pop("Q_CLUSTER_NAME", None)
    if "django_q" not in settings.INSTALLED_APPS:
        raise SystemExit("pooldoctor: the project's INSTALLED_APPS has no django_q: simulate "
                         "runs django-q's qcluster command")  # fmt: skip


def error_of(task: dict[str, Any]) -> BaseException | None:
    from pooldoctor.hosts.django_q import probe

    raised = probe.RAISED[:]
    probe.RAISED.clear()
    if task.get("success", True):
        return None
    if raised:
        return raised[0]
    text = str(task.get("result") or "")
    last = next((line for line in reversed(text.splitlines()) if line.strip()), text)
    return TaskFailed(last.strip())


def send_tasks() -> None:
    """The run's tasks, as the project sends them, once pooldoctor hands them over."""
    from django_q.signals import pre_enqueue
    from django_q.tasks import async_task

    path = W.directory / SEND_FILE
    deadline = time.monotonic() + READY_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    tasks = json.loads(path.read_text())
    current: dict[str, str] = {}

    def own_id(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        task["id"] = current["id"]  # django-q's id is a uuid4's hex, as the sent ids are

    pre_enqueue.connect(own_id, weak=False, dispatch_uid="pooldoctor")
    answer: dict[str, Any] = {"sent": 0}
    try:
        for entry in tasks:
            current["id"] = entry["task_id"]
            async_task(entry["func"], *entry["args"], **entry["kwargs"],
                       q_options={"task_name": f"pooldoctor-{entry['task_id']}"})  # fmt: skip
            answer["sent"] += 1
    except Exception as exc:
        answer["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        pre_enqueue.disconnect(dispatch_uid="pooldoctor")
    replace(W.directory / SENT_FILE, json.dumps(answer))


def main() -> None:
    W.configure()
    configure_cluster()
    W.setup()
    from django.core.management import call_command
    from django_q import monitor, signals

    from pooldoctor.hosts.django_q import probe

    subject = SPEC["subject"]
    own = subject["kind"] == "task" and not subject.get("wrapper")
    if not own:
        probe.SUBJECT = W.subject_task()

    def not_saved(task: dict[str, Any], broker: Any) -> None:
        """The run's results stay out of the project's database and cache."""

    monitor.save_task = monitor.save_cached = not_saved

    def spawned(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
        W.process_started(forked=True)
        if SPEC["apply_fix"]:
            W.discard_inherited_pool()  # what FIX_CODE's receiver does, in the same signal

    def started(sender: Any, func: Any = None, task: Any = None, **kwargs: Any) -> None:
        name = task_label(func, task)
        W.task_started(task["id"], PROBE_NAME if name == PROBE_PATH else name)

    def finished(sender: Any, func: Any = None, task: Any = None, **kwargs: Any) -> None:
        error = error_of(task)
        value = task.get("result") if error is None else None
        W.task_finished(task["id"], error=error, retval=value,
                        state="FAILURE" if error is not None else "SUCCESS")  # fmt: skip

    # First: the census sees the worker as forked, and labels the task, before the project's
    # receivers; last: the record after everything of the project's for the task.
    signals.post_spawn.connect(spawned, weak=False, dispatch_uid="pooldoctor")
    first_receiver(signals.post_spawn)
    signals.pre_execute.connect(started, weak=False, dispatch_uid="pooldoctor")
    first_receiver(signals.pre_execute)
    signals.post_execute_in_worker.connect(finished, weak=False, dispatch_uid="pooldoctor")
    if SPEC["warm_parent"]:
        W.warm_parent()  # start-up code that queried: AppConfig.ready(), a module import
    call_command("qcluster")  # returns once the sentinel started the cluster
    host = DjangoQHost()
    W.ready({"task": subject["name"] if own else PROBE_NAME, "version": host.version(),
             "command": COMMAND, "django_integration": host.facts().django,
             "results": "not saved (the monitor's save_task is replaced for the run)"})  # fmt: skip
    send_tasks()
    for child in multiprocessing.active_children():
        child.join()  # the sentinel, until the fleet stops the cluster


if __name__ == "__main__":
    main()
