"""The job function simulate sends to RQ workers for a built-in mode or a wrapper subject.

RQ sends a job as the dotted path of its function, imported by the worker; the probe is built in
the worker process from the run's spec (:mod:`.worker` sets :data:`SUBJECT`), so what is sent is
this module's :func:`probe` and the probe's kind of task. A work horse is forked from the worker
and finds :data:`SUBJECT` already set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SUBJECT: Callable[..., Any] | None = None
"""The subject's callable in this worker (a mode's task or the project's wrapper around the
probe), set by :mod:`pooldoctor.hosts.rq.worker` before the worker takes jobs."""

PATH = "pooldoctor.hosts.rq.jobs.probe"


def probe(*args: Any, **kwargs: Any) -> Any:
    if SUBJECT is None:
        raise RuntimeError("pooldoctor's RQ probe runs only in a worker simulate started")
    return SUBJECT(*args, **kwargs)
