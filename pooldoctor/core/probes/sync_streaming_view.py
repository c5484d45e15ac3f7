"""A sync view returning a ``StreamingHttpResponse`` whose plain generator queries as it streams.

Under ASGI Django consumes a sync iterator through ``sync_to_async`` (and warns that it must), so
the generator's ORM code runs on a thread-sensitive executor thread while the body is sent; under
WSGI the server's thread iterates it after the view returned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pooldoctor.core.probes import SyncTask, register, views


@register(__name__, order=140, sync=True, request=True)
def wrap(task: Any) -> SyncTask:
    from django.http import StreamingHttpResponse

    def view(request: Any) -> Any:
        kind = views.kind_of(request)

        def body() -> Iterator[bytes]:
            yield b'{"value": '
            yield str(task(kind)).encode()
            yield b"}"

        return StreamingHttpResponse(body(), content_type="application/json")

    return view
