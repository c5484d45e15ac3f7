"""Bare ``asyncio.run(task())`` in the calling thread, no cleanup at all.

The first thing anyone writes in a Celery task. Outside a ``ThreadSensitiveContext`` every
thread-sensitive ``sync_to_async`` call (all of Django's async ORM methods) runs on asgiref's
process-wide ``SyncToAsync.single_thread_executor``, a thread that lives as long as the process;
its connection is opened once and never closed or returned (asgiref ``sync.py``, ``SyncToAsync``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=10)
def wrap(task: AsyncTask) -> SyncTask:
    @functools.wraps(task)
    def run(*args: Any) -> Any:
        return asyncio.run(task(*args))

    return run
