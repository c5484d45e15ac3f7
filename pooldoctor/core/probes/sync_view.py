"""A sync view, reached through the project's ASGI (or WSGI) application.

Under ASGI, Django runs a sync view through ``sync_to_async(thread_sensitive=True)`` inside a
``ThreadSensitiveContext`` opened per request (``django/core/handlers/asgi.py``), so its ORM code
runs on a thread made for that request, which ends with it. A connection that outlives the request
(``CONN_MAX_AGE > 0``) is left behind with that thread until the garbage collector finds it: one
server session per request (Django ticket #33497, closed as documentation).
"""

from __future__ import annotations

from typing import Any

from pooldoctor.core.probes import SyncTask, register, views


@register(__name__, order=100, sync=True, request=True)
def wrap(task: Any) -> SyncTask:
    def view(request: Any) -> Any:
        return views.answer(task(views.kind_of(request)))

    return view
