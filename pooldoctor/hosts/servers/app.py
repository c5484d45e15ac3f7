"""The application a real server loads (``pooldoctor.hosts.servers.app:application``).

It sets pooldoctor up in the process that imports it, before anything of the project's runs (the
echo on every connection, the ledger, read-only sessions: what a Celery worker of ``simulate``
does in :mod:`pooldoctor.hosts.celery.worker`), then imports the project's own WSGI or ASGI
application and wraps it. gunicorn's ``--preload`` imports this in the master before the fork,
so a query the project runs at import opens its connection (or pool) there, echo included, and
every worker inherits it: exactly the hazard measured.

Each request pooldoctor sends carries a token (``X-Pooldoctor-Token``). The token is the task id
of :mod:`pooldoctor.core.echo`: the first query the request sends on a connection first sends the
token through that same connection, so a reply that is not the token is a crossed reply. After
the response is closed (after Django's ``request_finished``), the worker process that served it
takes the census and writes one record, as a Celery worker does per task.

Two reserved paths, mounted here without touching the project's URLconf:
``/__pooldoctor__/echo`` runs one query through Django's own handler (request_started, the
request's connection, request_finished; its URL resolution replaced by the query), and
``/__pooldoctor__/census`` answers this process's census as JSON.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pooldoctor.core import census, echo, project
from pooldoctor.core.census import django_pool
from pooldoctor.core.model import to_dict
from pooldoctor.core.worker_process import WorkerProcess, census_fields
from pooldoctor.hosts.servers import CENSUS_PATH, ECHO_PATH, ENV, MASTER_ENV, TOKEN_HEADER

SPEC: dict[str, Any] = json.loads(Path(os.environ[ENV]).read_text())
RUN = Path(SPEC["dir"])
PROJECT = project.ProjectSpec.from_dict(SPEC["project"])
ALIAS = PROJECT.alias
LEDGER = census.Ledger(ALIAS, tracking=SPEC.get("tracking", True))
TIMELINE_SPANS = 2000
"""Checkouts each process's timeline shows (the latest): it is rewritten after every request."""


class _State:
    """What one serving process knows about itself (new in every forked worker)."""

    def __init__(self, process: WorkerProcess | None = None) -> None:
        self.process = process
        self.opened_before = LEDGER.opened
        self.index = 0
        self.running: dict[str, float] = {}
        self.sites_for = (0, 0)
        """(lost, held) when the sites were last written."""
        self.records = -1
        """This process's records file (one JSON line per request, appended: a file per
        request would cost more than the request)."""
        self.lock = threading.Lock()


STATE = _State()


def _serving(forked: bool) -> None:
    """This process serves requests from now on: what did it get from its parent?"""
    global STATE
    STATE = _State(WorkerProcess(LEDGER, ALIAS, forked=forked))
    path = RUN / "records" / f"{os.getpid()}.jsonl"
    STATE.records = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    process = STATE.process
    info = {"pid": os.getpid(), "forked": forked,
            "inherited_pool": process is not None and process.inherited_pool_id is not None,
            "adopted": process.inherited_connections if process else 0}  # fmt: skip
    _replace(RUN / "workers" / f"{os.getpid()}.json", json.dumps(info))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the parent never reads half a file


# ---- one request: begin, end, record ---------------------------------------------------------


def _begin(token: str, name: str) -> None:
    echo.CURRENT.set(token)  # the request's first query on each connection echoes its token
    if STATE.process is not None:
        STATE.process.task_started(token, name)
    STATE.running[token] = time.monotonic()


def _end(token: str, status: int | None, error: BaseException | None) -> None:
    echo.CURRENT.set(None)
    if STATE.process is not None:
        STATE.process.task_finished(token, ok=error is None and status is not None and status < 500)
    started = STATE.running.pop(token, time.monotonic())
    with STATE.lock:
        _record(token, status, error, time.monotonic() - started)


def _record(token: str, status: int | None, error: BaseException | None, seconds: float) -> None:
    echoed = echo.take(token)
    # No forced collection per request (a Celery task's census forces one): a full collection
    # costs more than a request, and the ledger counts a connection that a dead thread still
    # holds as lost whether or not the collector has finalized it yet.
    pool = django_pool(ALIAS)
    opened = LEDGER.opened - STATE.opened_before
    STATE.opened_before = LEDGER.opened
    failed = error is not None or status is None or status >= 400
    if error is not None:
        described: str | None = f"{type(error).__name__}: {error}"
    else:
        described = f"HTTP {status}" if failed else None
    fields = census_fields(LEDGER, pool, STATE.process, token, echoed, error)
    lost, held = fields["lost"], fields["held"]
    record = {
        "task_id": token,
        "pid": os.getpid(),
        "index": STATE.index,
        "ok": not failed,
        "error": described,
        "expected_error": False,
        "seconds": round(seconds, 4),
        "opened": opened,
        **fields,
        "state": f"HTTP {status}" if status is not None else "no response",
    }
    STATE.index += 1
    if (lost, held) != STATE.sites_for:
        # Sites change only with the losses and the held connections: rewrite them then.
        STATE.sites_for = (lost, held)
        sites = LEDGER.leak_sites(pool, PROJECT.cwd)
        _replace(RUN / "sites" / f"{os.getpid()}.json", json.dumps(to_dict(sites), sort_keys=True))
    timeline = LEDGER.timeline_record(pool, latest=TIMELINE_SPANS)
    _replace(RUN / "timelines" / f"{os.getpid()}.json", json.dumps(timeline))
    # One write of one whole line: the parent reads only lines that end.
    os.write(STATE.records, (json.dumps(record) + "\n").encode())


def census_body() -> bytes:
    """This process's census, for ``/__pooldoctor__/census``."""
    pool = django_pool(ALIAS)
    rows, lost, held = LEDGER.snapshot(pool)
    return json.dumps({
        "pid": os.getpid(), "served": STATE.index, "opened": LEDGER.opened, "lost": lost,
        "held": held, "pool": to_dict(census.pool_stats(pool)),
        "connections": [to_dict(r) for r in rows],
    }).encode()  # fmt: skip


def _echo_view(request: Any) -> Any:
    """One query on the request's own connection (the one a view on this thread would use)."""
    from django.db import connections
    from django.http import HttpResponse

    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    body = json.dumps({"pid": os.getpid(), "backend_pid": row[0] if row else None})
    return HttpResponse(body, content_type="application/json")


# ---- WSGI --------------------------------------------------------------------------------------


class _Closing:
    """The response iterable, whose ``close()`` (which sends Django's request_finished) is
    followed by the census."""

    def __init__(self, inner: Iterable[bytes], done: Callable[[], None]) -> None:
        self.inner = inner
        self.done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.inner)

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.done()


def _wsgi(project_app: Callable[..., Any]) -> Callable[..., Any]:
    from django.core.handlers.wsgi import WSGIHandler

    class EchoHandler(WSGIHandler):
        def get_response(self, request: Any) -> Any:
            return _echo_view(request)

    echo_app = EchoHandler()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == CENSUS_PATH:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [census_body()]
        token = environ.get("HTTP_" + TOKEN_HEADER.upper().replace("-", "_"))
        target = echo_app if path == ECHO_PATH else project_app
        if not token:
            return target(environ, start_response)
        status: list[int] = []

        def starting(line: str, headers: Any, *rest: Any) -> Any:
            status.append(int(line.split()[0]))
            return start_response(line, headers, *rest)

        _begin(token, f"{environ.get('REQUEST_METHOD', 'GET')} {path}")
        try:
            result = target(environ, starting)
        except BaseException as exc:
            _end(token, None, exc)
            raise
        return _Closing(result, lambda: _end(token, status[-1] if status else None, None))

    return application


# ---- ASGI --------------------------------------------------------------------------------------


def _asgi(project_app: Callable[..., Any]) -> Callable[..., Any]:
    from asgiref.sync import sync_to_async
    from django.core.handlers.asgi import ASGIHandler

    class EchoHandler(ASGIHandler):
        async def get_response_async(self, request: Any) -> Any:
            # A sync view's way: on the request's thread-sensitive thread.
            return await sync_to_async(_echo_view, thread_sensitive=True)(request)

    echo_app = EchoHandler()

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and path == CENSUS_PATH:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": census_body()})
            return
        headers = dict(scope.get("headers") or ())
        token = headers.get(TOKEN_HEADER.lower().encode(), b"").decode() or None
        target = echo_app if path == ECHO_PATH else project_app
        if not token:
            await target(scope, receive, send)
            return
        status: list[int] = []

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        _begin(token, f"{scope.get('method', 'GET')} {path}")
        error: BaseException | None = None
        try:
            await target(scope, receive, sending)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _end(token, status[-1] if status else None, error)

    return application


async def _lifespan(receive: Any, send: Any) -> None:
    """Django's handler refuses lifespan: answer it here, so the servers start without a
    warning about it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# ---- the project's application -----------------------------------------------------------------


def project_application(interface: str, spec: str | None, settings_module: str) -> Any:
    """The application named ``MODULE:ATTR``, else the ``wsgi``/``asgi`` module next to the
    settings (as ``startproject`` lays a project out), else Django's own handler."""
    if spec is None:
        package = settings_module.rpartition(".")[0]
        candidate = f"{package}.{interface}" if package else interface
        if importlib.util.find_spec(candidate) is None:
            if interface == "asgi":
                from django.core.asgi import get_asgi_application

                return get_asgi_application()
            from django.core.wsgi import get_wsgi_application

            return get_wsgi_application()
        spec = f"{candidate}:application"
    module_name, _, attr = spec.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


def _bootstrap() -> Callable[..., Any]:
    project.prepare_sys_path(PROJECT)
    os.environ["DJANGO_SETTINGS_MODULE"] = PROJECT.settings
    project.import_settings(PROJECT.settings)
    entry = project.database_settings(ALIAS)
    project.apply_overrides(entry, PROJECT, SPEC["application_name"])
    # Before any query of the project's: a connection opened at import echoes too, and is in the
    # ledger with this process as its opener.
    echo.install(ALIAS)
    import django

    django.setup()
    LEDGER.install()
    (RUN / "workers").mkdir(exist_ok=True)
    if SPEC["forks"] and os.getpid() == int(os.environ.get(MASTER_ENV, "0")):
        # The master imports the application only to fork its workers (gunicorn --preload).
        os.register_at_fork(after_in_child=lambda: _serving(forked=True))
    else:
        _serving(forked=False)
    try:
        inner = project_application(SPEC["interface"], SPEC["app"], PROJECT.settings)
    except Exception as exc:
        # The parent stops waiting at once (a server may restart a worker that failed for ever).
        _replace(RUN / "failed.txt", f"{type(exc).__name__}: {exc}")
        raise
    return _asgi(inner) if SPEC["interface"] == "asgi" else _wsgi(inner)


application = _bootstrap()
