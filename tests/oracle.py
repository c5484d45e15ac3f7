"""An independent measurement of one subject, to check pooldoctor's verdicts against.

Uses none of pooldoctor's census: with a pool it reads only psycopg_pool's own counters (the pool
is filled to max_size before the first task, so its counters have no transient state); without a
pool it counts the server's sessions with the garbage collector switched off, so a connection that
nobody closed stays visible. Prints the series as JSON:

    python oracle.py MODE_OR_WRAPPER TASKS
"""

from __future__ import annotations

import gc
import json
import os
import sys

from psycopg_pool import PoolTimeout

from pooldoctor.core.probes import get_mode
from pooldoctor.core.probes.task import make_probe_task, schedule
from pooldoctor.core.subjects import apply_wrapper, load_wrapper

APP = f"pooldoctor-oracle-{os.getpid()}"


def main() -> None:
    name, tasks = sys.argv[1], int(sys.argv[2])
    import django
    from django.conf import settings

    entry = settings.DATABASES["default"]
    if os.environ.get("DATABASE_URL"):
        from pooldoctor.core.project import parse_database_url

        entry.update(parse_database_url(os.environ["DATABASE_URL"]))
    entry["OPTIONS"]["application_name"] = APP
    pool_options = entry["OPTIONS"].get("pool")
    if pool_options:
        # Full from the start (no background growth to blur the counters), and quick to give up.
        pool_options["min_size"] = pool_options.get("max_size", 4)
        pool_options["timeout"] = 2
    django.setup()
    from django.db import connections

    wrapper = connections["default"]
    pooled = bool(settings.DATABASES["default"]["OPTIONS"].get("pool"))
    if pooled:
        wrapper.pool.open(wait=True, timeout=10)
    else:
        gc.disable()
    if ":" in name:  # a project wrapper, MODULE:ATTR
        sys.path.insert(0, os.getcwd())
        run = apply_wrapper(name, load_wrapper(name), make_probe_task("default"))
    elif get_mode(name).request:
        run = _request_runner(name)
    else:
        mode = get_mode(name)
        run = mode.task("default")
    series: list[int] = []
    timed_out = False
    for kind in schedule(tasks):
        try:
            run(kind)
        except PoolTimeout:
            timed_out = True
            break
        except Exception:
            pass
        if pooled:
            stats = wrapper.pool.get_stats()
            series.append(stats["pool_size"] - stats["pool_available"])
        else:
            series.append(_server_sessions())
    print(json.dumps({"series": series, "pool_timeout": timed_out}))
    sys.stdout.flush()
    os._exit(0)


def _request_runner(name: str):  # type: ignore[no-untyped-def]
    """A request mode, sent the plain way: Django's own ASGI handler served by one long-lived
    event loop (as a server's worker does), through httpx's ASGITransport. A view that could not
    get a connection answers 500 (Django turns the pool's timeout into one): counted as it."""
    import asyncio
    import threading

    import httpx
    from django.core.asgi import get_asgi_application

    from pooldoctor.core.probes import views
    from pooldoctor.core.probes.task import OK

    views.install("default")
    app = get_asgi_application()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://localhost")

    def run(kind: str) -> None:
        request = client.get(views.path_for(name, kind))
        response = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)
        if kind == OK and response.status_code != 200:
            raise PoolTimeout(f"the view answered {response.status_code}")

    return run


def _server_sessions() -> int:
    """The server's sessions of this process, once those whose client closed them are gone.

    A backend ends a moment after its client closes the socket, so right after a task the server
    may still list a session that was closed properly. The wait is for that known event: until
    the server lists exactly the sessions of connection objects still open here (with the
    collector off, a connection nobody closed stays open and listed), for at most 5 s.
    """
    import time

    import psycopg
    from django.db import connections

    params = connections["default"].get_connection_params()
    params["application_name"] = "pooldoctor-oracle-observer"
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    deadline = time.monotonic() + 5
    with psycopg.connect(**params) as conn:
        while True:
            server = {row[0] for row in conn.execute(query, (APP,)).fetchall()}
            if server <= _open_backends() or time.monotonic() > deadline:
                return len(server)


def _open_backends() -> set[int]:
    import psycopg

    return {
        obj.info.backend_pid
        for obj in gc.get_objects()
        if isinstance(obj, psycopg.Connection) and not obj.closed
    }


def verdict(series: list[int], pool_timeout: bool) -> str:
    """leak: the pool ran dry or the count kept growing; pinned: constant and above zero."""
    if pool_timeout or (len(series) >= 2 and series[-1] > series[0]):
        return "leak"
    return "pinned" if series and series[-1] > 0 else "clean"


if __name__ == "__main__":
    main()
