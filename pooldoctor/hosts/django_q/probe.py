"""The function simulate sends to a django-q cluster for a built-in mode or a wrapper subject.

django-q sends a task as its function's dotted path, found again in the worker
(``pydoc.locate``); the probe is built in the cluster's main process from the run's spec
(:mod:`.worker` sets :data:`SUBJECT` before it forks), so what is sent is this module's
:func:`probe` with the probe's kind of task. django-q's worker keeps only the text of what a
task raised; the probe keeps the exception itself for the task's record (:data:`RAISED`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SUBJECT: Callable[..., Any] | None = None
"""The subject's callable in this cluster (a mode's task or the project's wrapper around the
probe), set by :mod:`pooldoctor.hosts.django_q.worker`."""
RAISED: list[BaseException] = []
"""What the probe's last run raised, taken by the worker's ``post_execute_in_worker`` receiver
(a worker runs one task at a time)."""


def probe(*args: Any, **kwargs: Any) -> Any:
    if SUBJECT is None:
        raise RuntimeError("pooldoctor's django-q probe runs only in a cluster simulate started")
    try:
        return SUBJECT(*args, **kwargs)
    except BaseException as exc:
        RAISED[:] = [exc]
        raise
