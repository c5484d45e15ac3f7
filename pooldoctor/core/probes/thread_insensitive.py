"""ORM calls through ``sync_to_async(thread_sensitive=False)``, run with ``asyncio.run``.

A common "make it parallel" change. Thread-insensitive calls run on the event loop's default
``ThreadPoolExecutor``, which ``asyncio.run`` shuts down at the end of every task; each of its
threads opened its own Django connection, and nothing closes them (asgiref ``sync.py``,
``SyncToAsync.__call__``; asyncio ``BaseEventLoop.shutdown_default_executor``).
"""

from __future__ import annotations

from pooldoctor.core.probes import SyncTask, close_old_connections, register
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=60, thread_sensitive=False)
def wrap(task: AsyncTask) -> SyncTask:
    # Run exactly as close-old-connections runs; only where the probe's ORM calls go differs.
    return close_old_connections.wrap(task)
