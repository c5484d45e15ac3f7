"""An async view whose ORM calls go through ``sync_to_async(thread_sensitive=False)``.

A common "make it parallel" change in views. Those calls run on the event loop's default
``ThreadPoolExecutor``, whose threads live as long as the server's loop and are shared by every
request: each keeps the connection it opened, outside any request's cleanup (asgiref ``sync.py``,
``SyncToAsync.__call__``). With the pool they hold its slots; with enough requests at a time the
others wait for the pool's timeout.
"""

from __future__ import annotations

from pooldoctor.core.probes import SyncTask, async_view, register
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=120, request=True, thread_sensitive=False)
def wrap(task: AsyncTask) -> SyncTask:
    return async_view.wrap(task)
