"""The probe task: real async ORM calls that read a catalog view and never write.

The model is unmanaged and sits over ``pg_catalog.pg_database``, so no migration, table or app is
needed in the project. A deterministic share of the tasks fail the ways real tasks fail: an
exception after a query, an exception inside ``atomic()`` (run through ``sync_to_async``), and a
task that switches autocommit off and dies mid-transaction, as a task killed by a time limit does.
Cleanup that only runs on success shows up on those tasks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import sync_to_async

OK = "ok"
RAISE_AFTER_QUERY = "raise-after-query"
RAISE_IN_ATOMIC = "raise-in-atomic"
OPEN_TRANSACTION = "open-transaction"
# The kind of a run of the project's own task (the probe's kinds say how it fails on purpose; a
# real task is run the same way every time).
TASK = "task"

# Where each failing kind falls in every block of tasks: after a few clean tasks, so that the
# effect of a success is measured before the first failure, and spread out so each failure's
# effect shows. Longer runs repeat the block, so a poisoned connection meets a second
# open-transaction task ("can't change 'autocommit' now").
_FAILURES = {3: RAISE_AFTER_QUERY, 5: RAISE_IN_ATOMIC, 7: OPEN_TRANSACTION}
_BLOCK = 12

AsyncTask = Callable[..., Coroutine[Any, Any, Any]]


class ProbeFailure(Exception):
    """Raised on purpose by the failing probe tasks."""


class NeverAwaited(Exception):
    """The task returned a coroutine: its code never ran (nothing awaited it)."""


def unawaited(result: Any, what: str) -> NeverAwaited | None:
    """The failure to record when a task's return value is a coroutine nobody awaited (closed
    here, so Python does not warn about it later); None for any other value."""
    if not inspect.iscoroutine(result):
        return None
    result.close()
    return NeverAwaited(f"{what} returned a coroutine that was never awaited: its code never ran")


def schedule(tasks: int) -> list[str]:
    """The kind of each task in a run of ``tasks``; short runs still fail at least once."""
    kinds = [_FAILURES.get(i % _BLOCK, OK) for i in range(tasks)]
    if tasks >= 2 and all(k == OK for k in kinds):
        kinds[-1] = RAISE_AFTER_QUERY
    return kinds


@functools.cache
def catalog_model(alias: str) -> Any:
    """An unmanaged model over pg_database, routed to ``alias`` by its manager."""
    from django.db import models

    class CatalogDatabase(models.Model):
        oid = models.IntegerField(primary_key=True)
        datname = models.CharField(max_length=63)

        class Meta:
            app_label = "pooldoctor_probe"
            db_table = "pg_database"
            managed = False

    CatalogDatabase.objects = CatalogDatabase.objects.db_manager(alias)
    return CatalogDatabase


def _fail_in_atomic(alias: str) -> None:
    from django.db import transaction

    with transaction.atomic(using=alias):
        catalog_model(alias).objects.filter(datname="template1").exists()
        raise ProbeFailure("raised inside atomic()")


def _leave_transaction_open(alias: str) -> None:
    from django.db import connections

    connection = connections[alias]
    connection.set_autocommit(False)
    catalog_model(alias).objects.filter(datname="template1").exists()
    raise ProbeFailure("died mid-transaction with autocommit off")


def make_probe_task(alias: str, *, thread_sensitive: bool = True) -> AsyncTask:
    """The probe coroutine function, taking the task's kind.

    With ``thread_sensitive`` (Django's own async ORM methods) the ORM runs wherever asgiref sends
    thread-sensitive calls; without it every call goes through
    ``sync_to_async(thread_sensitive=False)``, i.e. the event loop's default executor.
    """

    async def probe_task(kind: str) -> int:
        model = catalog_model(alias)
        if thread_sensitive:
            count = await model.objects.acount()
            await model.objects.aget(datname="template1")
            names = [db.datname async for db in model.objects.order_by("oid")]
        else:
            objects = model.objects
            count = await sync_to_async(objects.count, thread_sensitive=False)()
            await sync_to_async(lambda: objects.get(datname="template1"), thread_sensitive=False)()
            names = await sync_to_async(
                lambda: [db.datname for db in objects.order_by("oid")], thread_sensitive=False
            )()
        if kind == RAISE_AFTER_QUERY:
            raise ProbeFailure("raised after a query")
        if kind == RAISE_IN_ATOMIC:
            await sync_to_async(_fail_in_atomic, thread_sensitive=thread_sensitive)(alias)
        if kind == OPEN_TRANSACTION:
            await sync_to_async(_leave_transaction_open, thread_sensitive=thread_sensitive)(alias)
        return count + len(names)

    probe_task.__qualname__ = probe_task.__name__ = "pooldoctor_probe_task"
    probe_task.__module__ = __name__
    return probe_task


def make_sync_probe_task(alias: str) -> Callable[[str], int]:
    """The same queries and failures as plain sync ORM code: what most Celery tasks are."""

    def probe_task(kind: str) -> int:
        objects = catalog_model(alias).objects
        count = objects.count()
        objects.get(datname="template1")
        names = [db.datname for db in objects.order_by("oid")]
        if kind == RAISE_AFTER_QUERY:
            raise ProbeFailure("raised after a query")
        if kind == RAISE_IN_ATOMIC:
            _fail_in_atomic(alias)
        if kind == OPEN_TRANSACTION:
            _leave_transaction_open(alias)
        return count + len(names)

    probe_task.__qualname__ = probe_task.__name__ = "pooldoctor_sync_probe_task"
    probe_task.__module__ = __name__
    return probe_task
