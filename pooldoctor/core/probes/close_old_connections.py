"""``asyncio.run`` with ``close_old_connections()`` before and after, in the calling thread.

What Celery's Django fix-up and many hand-written decorators do around every task. Django's
connections are per thread (``ConnectionHandler`` uses ``Local(thread_critical=True)``), so the
cleanup only sees the calling thread's connection, never the one on the executor thread that ran
the ORM calls.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=20)
def wrap(task: AsyncTask) -> SyncTask:
    from django.db import close_old_connections

    @functools.wraps(task)
    def run(*args: Any) -> Any:
        close_old_connections()
        try:
            return asyncio.run(task(*args))
        finally:
            close_old_connections()

    return run
