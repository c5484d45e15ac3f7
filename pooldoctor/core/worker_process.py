"""What one Celery worker process keeps for its ledger: the pool it inherited, its running tasks'
labels, and its counters as they were when it started.

Shared by ``pooldoctor simulate``'s worker (:mod:`pooldoctor.hosts.celery.worker`) and the
worker side
of ``pooldoctor inspect`` (:mod:`pooldoctor.celery`). A prefork child starts as a copy of its
parent: the ledger it inherits already counts the parent's connections, and the pool it inherits
may hold the parent's idle connections (Celery before 5.6 never discards it). Both are taken into
account here, at the child's start.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from typing import Any

from pooldoctor.core import census, readonly
from pooldoctor.core.model import to_dict


def task_label(name: str, task_id: str) -> str:
    """How the ledger names a task: ``name[first 8 characters of the id]``."""
    return f"{name}[{task_id[:8]}]"


class WorkerProcess:
    """One worker process's view of its ledger (a prefork child's, or the worker's own for the
    pools that do not fork)."""

    def __init__(self, ledger: census.Ledger, alias: str, *, forked: bool) -> None:
        from django.db import connections

        self.ledger = ledger
        self.alias = alias
        self._wrapper_class = type(connections[alias])
        """Kept so that :meth:`pool` can be asked from any thread without creating a Django
        connection object there (Celery's control thread, for one)."""
        self.inherited_pool_id: int | None = None
        self.inherited_pool: Any = None
        """Kept alive so that a pool created after it is discarded cannot reuse its id()."""
        self.inherited_connections = 0
        pool = self.pool()
        if forked and pool is not None:
            self.inherited_pool_id = id(pool)
            self.inherited_pool = pool
            self.inherited_connections = ledger.adopt_inherited(pool)
        # The parent's counts came with the fork: this process's own are counted from here.
        self.base_opened = ledger.opened
        self.base_checkouts = ledger.checkouts
        self.base_returns = ledger.returns
        self.base_lost = ledger.lost_dead
        self._labels: dict[str, tuple[str, contextvars.Token[str | None], int]] = {}
        """Running tasks' ledger labels, context tokens and the thread that set them."""

    def pool(self) -> Any:
        return getattr(self._wrapper_class, "_connection_pools", {}).get(self.alias)

    def task_started(self, task_id: str, name: str) -> str:
        """Label the checkouts of the task from here on; call on the thread that runs it (a
        threads pool runs several at once, each on its own thread and context; asgiref copies
        the context into the executor threads it uses)."""
        label = task_label(name, task_id)
        token = self.ledger.task_started(label)
        self._labels[task_id] = (label, token, threading.get_ident())
        return label

    def task_finished(self, task_id: str, *, ok: bool | None = None) -> None:
        labelled = self._labels.pop(task_id, None)
        if labelled is None:
            return
        label, token, ident = labelled
        # Only the thread (context) that set the label can reset it; Celery sends task_postrun
        # from the task's own thread, so this is the usual case.
        same_thread = ident == threading.get_ident()
        try:
            self.ledger.task_finished(label, token if same_thread else None, ok=ok)
        except ValueError:  # another context after all: the end is recorded, the label stays
            self.ledger.task_finished(label, ok=ok)


def census_fields(ledger: census.Ledger, pool: Any, process: WorkerProcess | None, token: str,
                  echoed: tuple[str, int] | None,
                  error: BaseException | None) -> dict[str, Any]:  # fmt: skip
    """What a worker process's record says of its connections after a task (a task runner's
    worker) or a request (a web server's): the census ``judge_fleet`` reads, the reply its
    first query echoed (``echo.take``), and what the read-only guard refused since the last."""
    inherited_id = process.inherited_pool_id if process else None
    rows, lost, held = ledger.snapshot(pool)
    refused, direct = readonly.take()
    return {
        "sqlstate": readonly.sqlstate_of(error),
        "refused": to_dict(refused),
        "direct": to_dict(direct),
        "token": token,
        "echo": echoed[0] if echoed else None,
        "backend_pid": echoed[1] if echoed else None,
        "inherited_pool": inherited_id is not None,
        "inherited_pool_in_use": pool is not None and id(pool) == inherited_id,
        "inherited_connections": process.inherited_connections if process else 0,
        "pool": to_dict(census.pool_stats(pool)),
        "lost": lost,
        "held": held,
        "connections": [dataclasses.asdict(r) for r in rows],  # plain fields: the fast way
    }
