"""The worker side of ``pooldoctor inspect`` for Dramatiq: a middleware, first on the broker.

    import pooldoctor.dramatiq
    pooldoctor.dramatiq.install(dramatiq.get_broker())  # or broker, in the broker module

(or ``"pooldoctor.dramatiq.CensusMiddleware"`` first in django-dramatiq's
``DRAMATIQ_BROKER["MIDDLEWARE"]``). Nothing happens until a worker boots: web processes import the
same module and are left alone. Each Dramatiq worker process is a worker of its own (its consumers,
its threads), forked from a main process that never loads the project, so each is one node of
``inspect --runner dramatiq``: ``dramatiq@<host>.<main pid>.<pid>``. Around each message, on the
thread that runs it, the census labels the task, and after every other middleware's
``after_process_message`` (django-dramatiq's DbConnectionsMiddleware's included) it writes the
process's snapshot (:mod:`pooldoctor.hosts.live`).

Read-only: no connection is opened, closed, reset or returned by any of this.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from dramatiq import Middleware

from pooldoctor.hosts.live import TIMELINE, Installation

RUNNER = "dramatiq"


class CensusMiddleware(Middleware):
    """pooldoctor's census of one worker process's connections (``inspect --runner dramatiq``)."""

    def __init__(self, *, alias: str = "default", tracking: bool = True,
                 timeline: int = TIMELINE) -> None:  # fmt: skip
        self.installation = Installation(alias, tracking, timeline)

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        # In each worker process, before its threads take messages (after_process_boot comes
        # before the tasks modules that usually call install() are imported).
        threads = int(getattr(worker, "worker_threads", 0) or 0)
        processes = _processes()
        kind = "processes" if processes > 1 else "threads"
        name = f"dramatiq@{socket.gethostname()}.{os.getppid()}.{os.getpid()}"
        self.installation.start_node(name, kind, threads, forks=False, runner=RUNNER)

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.installation.task_started(message.message_id, message.actor_name)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:  # fmt: skip
        state = "FAILURE" if exception is not None else "SUCCESS"
        self.installation.task_finished(message.message_id, state)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.installation.task_finished(message.message_id, "FAILURE")

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.installation.on_process_shutdown()
        self.installation.on_worker_shutdown()


def install(broker: Any, *, alias: str = "default", tracking: bool = True,
            timeline: int = TIMELINE) -> CensusMiddleware:  # fmt: skip
    """Add the census middleware to ``broker``, first: its ``after_process_message`` then runs
    after every other middleware's (Dramatiq runs them in reverse order). Calling it again for
    the same broker changes nothing."""
    for middleware in broker.middleware:
        if isinstance(middleware, CensusMiddleware):
            return middleware
    census = CensusMiddleware(alias=alias, tracking=tracking, timeline=timeline)
    first = broker.middleware[0] if broker.middleware else None
    broker.add_middleware(census, before=type(first) if first is not None else None)
    return census


def _processes() -> int:
    """The ``--processes`` of the dramatiq command this process was forked from (1 if unknown)."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--processes=") else None
        if arg in ("--processes", "-p") and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and value.isdigit():
            return int(value)
    return 1
