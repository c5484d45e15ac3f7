"""An async view running Django's async ORM methods, through the project's application.

Each ``aget``/``acount`` goes through ``sync_to_async(thread_sensitive=True)``: under ASGI, to the
request's own ``ThreadSensitiveContext`` thread, new per request, like a sync view's.
"""

from __future__ import annotations

from typing import Any

from pooldoctor.core.probes import SyncTask, register, views
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=110, request=True)
def wrap(task: AsyncTask) -> SyncTask:
    async def view(request: Any) -> Any:
        return views.answer(await task(views.kind_of(request)))

    return view
