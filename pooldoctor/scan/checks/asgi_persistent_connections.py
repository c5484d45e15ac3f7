"""Persistent connections (``CONN_MAX_AGE`` above 0, or None) without a pool, served over ASGI.

Django's ASGI handler runs every request in its own ``ThreadSensitiveContext``
(django/core/handlers/asgi.py, ``ASGIHandler.__call__``): the request's sync code, the ORM
included, runs on a thread made for that request, which ends with it (asgiref ``sync.py``,
``SyncToAsync``: one single-thread executor per context). Connections are kept per thread
(``ConnectionHandler``), and ``close_old_connections`` at the end of the request keeps a
connection younger than ``CONN_MAX_AGE``, so each request leaves an open server session behind on
a dead thread until the garbage collector closes it. Measured: 30 requests left 30 sessions; 100
requests exhausted ``max_connections=100`` (reported in the wild as daphne with
``CONN_MAX_AGE=60`` running out of 50 connections).

The ASGI server is looked for in the deployment files: a command that runs uvicorn, daphne,
hypercorn, granian (``--interface asgi``) or gunicorn with a uvicorn worker class (Procfiles,
Dockerfiles, compose files, systemd units, supervisord configs, shell scripts, Makefiles,
``worker_class`` in a gunicorn config, ``uvicorn.run()``), else an ASGI server among the
dependencies when no command says how the app is served. An ``asgi.py`` alone is not evidence:
``startproject`` writes one into every project. An alias with a pool is PD101's.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.conn_max_age_with_pool import describe
from pooldoctor.scan.databases import PoolState
from pooldoctor.scan.deployment import Served
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    'set CONN_MAX_AGE = 0 (the default), or use Django\'s pool (OPTIONS["pool"], with '
    "CONN_MAX_AGE = 0): under ASGI no connection outlives its request's thread anyway"
)


# The live settings are evaluated before the checks run: CONN_MAX_AGE is where they set it.
NEEDS = ("CONN_MAX_AGE", "conn_max_age")


@register(__name__, "PD316", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    served = facts.asgi_server
    if served is None:
        return
    for alias in facts.settings.databases:
        age = alias.conn_max_age
        if alias.pool is PoolState.ON or age is None or age.data == 0:
            continue  # a pool on the same alias: PD101
        if age.place is None or age.place.file != source.relative:
            continue
        question = "if the pool is off, " if alias.pool is PoolState.UNKNOWN else ""
        yield Hit(
            age.place.line,
            age.place.column,
            f"{question}{describe(age)} without a pool, and the app is served over ASGI "
            f"({_evidence(served)}): Django's ASGI handler runs each request's ORM code on a "
            "thread that ends with the request, so every request leaves its persistent "
            "connection open on the server until garbage collection (measured: 30 requests, "
            "30 sessions; 100 requests exhausted max_connections=100)",
        )


def _evidence(served: Served) -> str:
    if served.command:
        return f"{served.server} at {served.where}"
    return (
        f"{served.server} is a dependency at {served.where}; no command in the scanned files "
        "says how the app is served"
    )
