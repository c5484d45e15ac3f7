"""Run async task bodies from sync Celery tasks, one ThreadSensitiveContext per task."""
import asyncio
import functools

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections


def async_task(func):
    @functools.wraps(func)
    def run(*args, **kwargs):
        async def body():
            async with ThreadSensitiveContext():
                try:
                    return await func(*args, **kwargs)
                finally:
                    await sync_to_async(close_old_connections)()

        return asyncio.run(body())

    return run
