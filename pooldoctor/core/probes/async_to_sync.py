"""asgiref's ``async_to_sync`` bridge, with ``close_old_connections()`` after the task.

Called from a sync thread with no event loop, ``AsyncToSync`` runs the coroutine on a loop in
another thread and sends thread-sensitive calls back to the calling thread through a
``CurrentThreadExecutor`` (asgiref ``sync.py``, ``AsyncToSync.__call__``). The ORM therefore runs
in the task's own thread, where Django's cleanup can reach it.
"""

from __future__ import annotations

import functools
from typing import Any

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask

FIX = '''\
import functools
from asgiref.sync import async_to_sync
from django.db import close_old_connections

def run_async_task(func):
    """Run an async task body (any task runner); its ORM calls come back to the task's thread."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return async_to_sync(func)(*args, **kwargs)
        finally:
            close_old_connections()
    return wrapper
'''


@register(__name__, order=50, fix=FIX)
def wrap(task: AsyncTask) -> SyncTask:
    from asgiref.sync import async_to_sync
    from django.db import close_old_connections

    @functools.wraps(task)
    def run(*args: Any) -> Any:
        close_old_connections()
        try:
            return async_to_sync(task)(*args)
        finally:
            close_old_connections()

    return run
