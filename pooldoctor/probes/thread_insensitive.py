"""ORM calls through ``sync_to_async(thread_sensitive=False)``, run with ``asyncio.run``.

A common "make it parallel" change. Thread-insensitive calls run on the event loop's default
``ThreadPoolExecutor``, which ``asyncio.run`` shuts down at the end of every task; each of its
threads opened its own Django connection, and nothing closes them (asgiref ``sync.py``,
``SyncToAsync.__call__``; asyncio ``BaseEventLoop.shutdown_default_executor``).
"""

from __future__ import annotations

import asyncio
import functools

from pooldoctor.probes import SyncTask, register
from pooldoctor.probes.task import AsyncTask


@register(__name__, order=60, thread_sensitive=False)
def wrap(task: AsyncTask) -> SyncTask:
    from django.db import close_old_connections

    @functools.wraps(task)
    def run(kind: str) -> int:
        close_old_connections()
        try:
            return asyncio.run(task(kind))
        finally:
            close_old_connections()

    return run
