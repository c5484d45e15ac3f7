"""The widely shared recipe: a per-task ``ThreadSensitiveContext`` with cleanup outside it.

Reproduces the decorator from "Using Async Functions in Celery with Django Connection Pooling"
(October 2025): ``close_old_connections()`` in the calling thread before and after
``asyncio.run()`` of the task inside ``async with ThreadSensitiveContext()``. The context gives the
task its own ORM thread, which ends at ``__aexit__``; nothing closes that thread's connection, so
whatever it holds is left to the garbage collector (asgiref ``sync.py``, ``ThreadSensitiveContext``;
Django ticket #32889).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=30)
def wrap(task: AsyncTask) -> SyncTask:
    from asgiref.sync import ThreadSensitiveContext
    from django.db import close_old_connections

    @functools.wraps(task)
    def run(*args: Any) -> Any:
        async def in_context() -> Any:
            async with ThreadSensitiveContext():
                return await task(*args)

        close_old_connections()
        try:
            return asyncio.run(in_context())
        finally:
            close_old_connections()

    return run
