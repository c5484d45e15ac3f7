"""The RQ worker classes simulate's workers run (``rqworker --worker-class``), and the fix.

RQ has no signals: what a worker does around a job is its class's methods, so pooldoctor's hooks
are a mixin put in front of the worker class the run asks for (``Worker``, which forks a work
horse per job, or ``SimpleWorker``, which runs jobs itself), and the fix for an inherited pool is
the worker subclass a project would write (:class:`DiscardInheritedPool`). :mod:`.worker` builds
the class for the run and sets it as :data:`RUN`, the dotted path given to ``--worker-class``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from collections.abc import Callable
from typing import Any

RUN: type | None = None
"""The run's worker class (``--worker-class pooldoctor.hosts.rq.workers.RUN``)."""
RUN_PATH = "pooldoctor.hosts.rq.workers.RUN"
PROBE: Any = None
"""The run's :class:`pooldoctor.hosts.probe_worker.ProbeWorker`."""
READY: Callable[[Any], None] | None = None
"""Told the worker once it is registered and about to take jobs."""
ALIAS = "default"
"""The database alias whose pool the fix discards (the run's)."""


class ProbeHooks:
    """pooldoctor's census around each job, AFTER RQ's own handling of it (the job's status,
    registries and callbacks are written inside ``perform_job``)."""

    _pooldoctor_error: BaseException | None = None

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        if READY is not None:
            READY(self)

    def main_work_horse(self, *args: Any, **kwargs: Any) -> None:
        """The work horse, just forked (first thing): what came from the worker?"""
        PROBE.process_started(forked=True)
        _die_with_worker()
        super().main_work_horse(*args, **kwargs)  # type: ignore[misc]

    def perform_job(self, job: Any, *args: Any, **kwargs: Any) -> Any:
        self._pooldoctor_error = None
        PROBE.task_started(job.id, job.func_name)
        try:
            return super().perform_job(job, *args, **kwargs)  # type: ignore[misc]
        finally:
            PROBE.task_finished(job.id, error=self._pooldoctor_error,
                                retval=getattr(job, "_result", None))  # fmt: skip

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        # perform_job catches what the job raised and hands it here: the record's error.
        self._pooldoctor_error = exc_info[1]
        super().handle_exception(job, *exc_info)  # type: ignore[misc]


class DiscardInheritedPool:
    """The fix, as a project writes it: each work horse is a new process per job, forked from a
    worker that may hold an open pool (its start-up code queried); the horse drops that pool
    before the job runs, and opens its own on the job's first query."""

    def main_work_horse(self, *args: Any, **kwargs: Any) -> None:
        from django.db import connections

        with contextlib.suppress(KeyError):
            connections[ALIAS].close_pool()
        super().main_work_horse(*args, **kwargs)  # type: ignore[misc]


FIX_CODE = """\
discard the inherited pool in each work horse, with a Worker subclass (myproject/workers.py):

# A work horse is a new process per job, forked from the worker: drop the pool the worker
# had open before the job's first query.
from django.db import connections
from rq import Worker


class ForkSafeWorker(Worker):
    def main_work_horse(self, job, queue):
        connections["default"].close_pool()
        super().main_work_horse(job, queue)

# settings.py: RQ = {"WORKER_CLASS": "myproject.workers.ForkSafeWorker"}
# (or: manage.py rqworker --worker-class myproject.workers.ForkSafeWorker)
"""


def build(base: type, apply_fix: bool) -> type:
    """The run's worker class: pooldoctor's hooks first (they see the horse as forked, before
    the fix), then the fix when it is being proven, then the project's or RQ's class."""
    bases = (ProbeHooks, DiscardInheritedPool, base) if apply_fix else (ProbeHooks, base)
    return type(f"Pooldoctor{base.__name__}", bases, {"__module__": __name__})


def _die_with_worker() -> None:
    # A horse runs in a process group of its own (RQ calls setpgrp), which the fleet's kill of
    # the worker's group does not reach: it ends with the worker instead (Linux only).
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
