"""ORM code run through ``sync_to_async(..., thread_sensitive=False)`` in a view.

Under Django's ASGI handler each request runs in its own ``ThreadSensitiveContext``
(django/core/handlers/asgi.py, ``ASGIHandler.__call__``), and its thread-sensitive sync code,
including the ``request_finished`` signal whose ``close_old_connections`` is Django's only
connection cleanup, runs on that context's thread. A thread-insensitive call runs on the event
loop's default ``ThreadPoolExecutor`` instead (asgiref ``sync.py``, ``SyncToAsync.__call__``:
``loop.run_in_executor(None, ...)``), whose threads live as long as the server process. Each
opens its own connection (``ConnectionHandler`` keeps one per thread), and nothing on the request
path ever closes it: with a pool, every executor thread keeps a slot checked out. Measured: a pool
of ``max_size`` 4 and 8 concurrent requests lost 4 slots, and the following requests failed with
``PoolTimeout``.

A view is an async function or method in ``views.py``, a module under ``views/``, or a module a
URLconf (a module with ``urlpatterns``) imports. The same calls elsewhere are PD305's.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.thread_insensitive_orm import thread_insensitive_orm_calls
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    "drop thread_sensitive=False around ORM code in views: the default runs it on the request's "
    "own thread, whose connection Django closes when the request ends (or use the async ORM: "
    "aget(), acount()...)"
)


NEEDS = (("thread_sensitive", "sync_to_async", "False"),)


@register(__name__, "PD307", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "thread_sensitive" not in source.text or not facts.is_view_module(source):
        return
    for offload in thread_insensitive_orm_calls(source, facts):
        yield Hit(
            offload.call.lineno,
            offload.call.col_offset + 1,
            f"sync_to_async(thread_sensitive=False) in a view runs {offload.what} on the event "
            "loop's "
            "default executor, off the request's thread: each executor thread opens its own "
            "connection, which Django's end-of-request cleanup never closes, and keeps it for "
            "the life of the process (measured with a pool of max_size 4: 8 concurrent requests "
            "lost 4 slots, and later requests failed with PoolTimeout)" + offload.note,
        )
