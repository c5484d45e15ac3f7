"""``close_old_connections()`` around ``asyncio.run``, in the wrong thread.

What Celery's Django fix-up and many hand-written decorators do around every task: the cleanup
runs in the calling thread, the ORM ran on asgiref's process-wide thread: pinned.
"""

import asyncio
import functools

from django.db import close_old_connections


def run_async_task(func):
    """Run an async task body, closing stale connections before and after."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return asyncio.run(func(*args, **kwargs))
        finally:
            # Django's own cleanup, as after a request.
            close_old_connections()

    return wrapper
