"""A per-task ``ThreadSensitiveContext`` whose cleanup runs on the context's own thread.

What Django's ASGI handler effectively does for a request: the request gets its own ORM thread and
``request_finished`` runs ``close_old_connections()`` on that thread before the context exits
(``django/core/handlers/asgi.py``). Here the cleanup is a ``sync_to_async`` call inside the context,
in a ``finally`` so failing tasks get it too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask

FIX = '''\
import asyncio, functools
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections

def run_async_task(func):
    """Run an async task body with its own ORM thread, cleaned up on that thread."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        async def main():
            async with ThreadSensitiveContext():
                try:
                    return await func(*args, **kwargs)
                finally:
                    # Same thread as the task's ORM calls: returns the connection to the pool.
                    await sync_to_async(close_old_connections)()
        return asyncio.run(main())
    return wrapper
'''


@register(__name__, order=40, fix=FIX)
def wrap(task: AsyncTask) -> SyncTask:
    from asgiref.sync import ThreadSensitiveContext

    return cleaned_in_context(task, ThreadSensitiveContext)


def cleaned_in_context(task: AsyncTask, context: Callable[[], Any]) -> SyncTask:
    """``asyncio.run`` the task inside ``context()``, with ``close_old_connections()`` run on the
    context's ORM thread before it exits, failed tasks included."""
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    @functools.wraps(task)
    def run(*args: Any) -> Any:
        async def in_context() -> Any:
            async with context():
                try:
                    return await task(*args)
                finally:
                    await sync_to_async(close_old_connections)()

        return asyncio.run(in_context())

    return run
