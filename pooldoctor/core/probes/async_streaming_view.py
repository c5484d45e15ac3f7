"""An async view returning a ``StreamingHttpResponse`` whose async generator queries as it streams.

The ORM calls run while Django sends the body (``ASGIHandler.send_response``), after the view has
returned, still inside the request's ``ThreadSensitiveContext``; ``request_finished`` is sent only
once the body is done (or the client went away).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pooldoctor.core.probes import SyncTask, register, views
from pooldoctor.core.probes.task import AsyncTask


@register(__name__, order=130, request=True)
def wrap(task: AsyncTask) -> SyncTask:
    from django.http import StreamingHttpResponse

    async def view(request: Any) -> Any:
        kind = views.kind_of(request)

        async def body() -> AsyncIterator[bytes]:
            yield b'{"value": '
            yield str(await task(kind)).encode()
            yield b"}"

        return StreamingHttpResponse(body(), content_type="application/json")

    return view
