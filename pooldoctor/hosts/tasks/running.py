"""One Django task, run in this thread as its backend's worker runs it (``check --task``)."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import Callable
from typing import Any


def immediate(task: Any, signals: Any, close_old_connections: Callable[[], None]
              ) -> Callable[..., Any]:  # fmt: skip
    """Through the ImmediateBackend's own ``enqueue``: it runs the task at once, here, between
    its task_started and task_finished; the exception it records is raised again. The backend
    has no worker: the task runs in the thread that enqueues it, a request's in a project, so
    the clean-up around it is the request's (Django's request_started and request_finished
    handlers call close_old_connections())."""
    caught: dict[str, BaseException] = {}

    def on_finished(sender: Any, task_result: Any = None, **kwargs: Any) -> None:
        error = sys.exc_info()[1]  # sent inside the backend's except block on failure
        if error is not None and task_result is not None:
            caught[str(task_result.id)] = error

    signals.task_finished.connect(on_finished, weak=False)

    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()  # request_started
        try:
            result = task.enqueue(*args, **kwargs)
        finally:
            close_old_connections()  # request_finished
        error = caught.pop(str(result.id), None)
        if error is not None:
            raise error
        return result.return_value

    return run


def like_db_worker(task: Any, signals: Any, close_old_connections: Callable[[], None]
                   ) -> Callable[..., Any]:  # fmt: skip
    """As ``db_worker``'s loop and ``Worker.run_task`` do, without its queue row (a check may be
    read-only): close_old_connections(), task_started, ``Task.call`` (``async_to_sync`` for an
    async def), task_finished, close_old_connections()."""
    sender = type(task.get_backend())

    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()  # the loop, right after waking up
        result = task_result(task, args, kwargs)
        try:
            signals.task_started.send(sender=sender, task_result=result)
            if task.takes_context:
                context = sys.modules[type(task).__module__].TaskContext(task_result=result)
                value = task.call(context, *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
        except BaseException:
            set_status(result, "FAILED")
            signals.task_finished.send(sender=sender, task_result=result)
            raise
        else:
            set_status(result, "SUCCESSFUL")
            signals.task_finished.send(sender=sender, task_result=result)
            return value
        finally:
            close_old_connections()  # the loop, after each task

    return run


def task_result(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A running TaskResult for the signals' receivers, as the worker's row would give them
    (its fields differ between Django and the backport: each is filled by name)."""
    from django.utils import timezone

    module = sys.modules[type(task).__module__]
    cls, status = module.TaskResult, module.TaskResultStatus
    now = timezone.now()
    values = {
        "task": task, "id": uuid.uuid4().hex, "status": status.RUNNING, "enqueued_at": now,
        "started_at": now, "last_attempted_at": now, "finished_at": None, "args": list(args),
        "kwargs": dict(kwargs), "backend": task.backend, "errors": [], "worker_ids": ["check"],
    }  # fmt: skip
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in values.items() if k in names})


def set_status(result: Any, name: str) -> None:
    status = sys.modules[type(result).__module__].TaskResultStatus
    object.__setattr__(result, "status", status[name])
