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

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.conn_max_age_with_pool import alias_of
from pooldoctor.scan.databases import NOT_LITERAL, Setting, read_databases
from pooldoctor.scan.deployment import Served
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import parents

FIX = (
    'set CONN_MAX_AGE = 0 (the default), or use Django\'s pool (OPTIONS["pool"], with '
    "CONN_MAX_AGE = 0): under ASGI no connection outlives its request's thread anyway"
)


NEEDS = ("CONN_MAX_AGE", "conn_max_age")


@register(__name__, "PD316", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    served = facts.asgi_server
    if served is None or ("CONN_MAX_AGE" not in source.text and "conn_max_age" not in source.text):
        return
    if source.tree is None:
        return
    settings = read_databases(source.tree)
    parent_of = parents(source.tree)
    pooled = [alias_of(pool.node, parent_of) for pool in settings.pools]
    for age in settings.conn_max_age:
        if age.value is not NOT_LITERAL and age.value == 0:
            continue
        alias = alias_of(age.node, parent_of)
        if any(alias is None or a is None or a == alias for a in pooled):
            continue  # a pool on the same alias: PD101
        evidence = _evidence(served)
        yield Hit(
            age.line,
            age.column,
            f"{_describe(age)} without a pool, and the app is served over ASGI ({evidence}): "
            "Django's ASGI handler runs each request's ORM code on a thread that ends with the "
            "request, so every request leaves its persistent connection open on the server "
            "until garbage collection (measured: 30 requests, 30 sessions; 100 requests "
            "exhausted max_connections=100)",
        )


def _describe(age: Setting) -> str:
    if age.value is NOT_LITERAL:
        return "CONN_MAX_AGE is computed (from the environment?) and may be non-zero"
    if age.value is None:
        return "CONN_MAX_AGE=None (persistent connections without limit)"
    if isinstance(age.node, ast.Call):
        return f"CONN_MAX_AGE defaults to {age.value!r}"
    return f"CONN_MAX_AGE={age.value!r}"


def _evidence(served: Served) -> str:
    if served.command:
        return f"{served.server} at {served.where}"
    return (
        f"{served.server} is a dependency at {served.where}; no command in the scanned files "
        "says how the app is served"
    )
