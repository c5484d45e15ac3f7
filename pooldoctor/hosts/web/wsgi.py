"""The WSGI host, in process: the project's WSGI application served by a fixed set of threads.

The threaded case (gunicorn's ``gthread``, waitress, mod_wsgi): ``--concurrency`` threads live as
long as the run and each serves requests one after another, so a connection Django keeps per
thread (``CONN_MAX_AGE``) is reused by the next request on that thread, as in production. Requests
go through httpx's ``WSGITransport``, which closes each response (Django's ``request_finished``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from pooldoctor.hosts.web.common import Reply, Request


class WsgiClient:
    def __init__(self, app: Any, base_url: str, threads: int) -> None:
        self.app = app
        self.base_url = base_url
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi-thread")
        self._local = threading.local()

    def round(self, requests: Sequence[Request]) -> list[Reply]:
        # Each request in a copy of this thread's context: the ledger's task label goes along.
        futures = [
            self.threads.submit(contextvars.copy_context().run, self._send, request)
            for request in requests
        ]
        return [future.result() for future in futures]

    def _send(self, request: Request) -> Reply:
        http = getattr(self._local, "http", None)
        if http is None:
            transport = httpx.WSGITransport(app=self.app, raise_app_exceptions=False)
            http = self._local.http = httpx.Client(transport=transport, base_url=self.base_url)
        try:
            response = http.request(
                request.method, request.path, headers=list(request.headers), content=request.body
            )
        except Exception as exc:
            return Reply(status=None, error=f"{type(exc).__name__}: {exc}")
        return Reply(status=response.status_code)

    def close(self) -> None:
        self.threads.shutdown(wait=True)
