"""The first thing anyone writes: ``asyncio.run`` of the task body, no cleanup.

The shape of many projects' Celery helpers (for example yegoryakubovich/fexps_api,
``app/utils/decorators/celery_async.py``, with ``run_until_complete``; the "asyncio.run in a Celery
task" answers). The ORM runs on asgiref's process-wide thread: pinned.
"""

import asyncio
import functools


def celery_async(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return asyncio.run(func(*args, **kwargs))

    return wrapper
