"""The ASGI host, in process: the project's ASGI application served by one long-lived event loop.

Like a server's worker, one loop on its own thread serves every request of the subject, so the
loop's default executor (where ``sync_to_async(thread_sensitive=False)`` sends ORM calls) lives as
long as the run, as it does in production. Requests go through httpx's ``ASGITransport``; the
application's exceptions come back as a reply, not as an exception in pooldoctor.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from pooldoctor.hosts.web.common import Reply, Request

# A request that never answers is the watchdog's to report (per-task time limit); this only keeps
# a stuck loop from holding the subject process forever.
_ROUND_LIMIT = 600.0


class AsgiClient:
    def __init__(self, app: Any, base_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="pooldoctor-asgi-loop", daemon=True
        )
        self.thread.start()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url)

    def round(self, requests: Sequence[Request]) -> list[Reply]:
        # run_coroutine_threadsafe schedules from this thread, in a copy of its context: the
        # ledger's task label rides into the requests and on into asgiref's executor threads.
        future = asyncio.run_coroutine_threadsafe(self._round(requests), self.loop)
        return future.result(timeout=_ROUND_LIMIT)

    async def _round(self, requests: Sequence[Request]) -> list[Reply]:
        return list(await asyncio.gather(*(self._send(r) for r in requests)))

    async def _send(self, request: Request) -> Reply:
        try:
            response = await self.http.request(
                request.method,
                request.path,
                headers=list(request.headers),
                content=request.body,
            )
        except Exception as exc:  # the application raised before it answered
            return Reply(status=None, error=f"{type(exc).__name__}: {exc}")
        return Reply(status=response.status_code)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.http.aclose(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
