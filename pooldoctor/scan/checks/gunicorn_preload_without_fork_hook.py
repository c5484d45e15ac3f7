"""gunicorn's ``--preload`` with a database pool and no ``post_fork`` hook that closes it.

``preload_app`` (``--preload``) makes gunicorn "load application code before the worker processes
are forked" (gunicorn docs, settings: preload_app; gunicorn/arbiter.py, ``Arbiter.setup`` calls
``self.app.wsgi()`` before any worker is spawned). Anything that touches the database while the app
loads creates Django's pool (kept per process in ``DatabaseWrapper._connection_pools``,
django/db/backends/postgresql/base.py) and its connections in the master; every worker inherits
the same pool and the same sockets, so workers interleave their queries on one connection and read
each other's results. When a query does run while the app loads, PD315 reports the same line
as an error, naming the query.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.deployment import preloads_in_python, preloads_in_text
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    "add a post_fork(server, worker) hook to the gunicorn config that calls close_pool() on each "
    "database connection (for conn in connections.all(): conn.close_pool()), or drop --preload"
)


NEEDS = ("preload",)


@register(__name__, "PD311", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not facts.pool_may_be_on or facts.gunicorn_fork_hook or "preload" not in source.text:
        return
    if facts.preload_shares_import_query:
        return  # PD315 reports the same lines, with the query that makes it certain
    if source.is_python:
        if source.tree is not None:
            for line, column in preloads_in_python(source.tree):
                yield Hit(line, column, facts.pool_question + _message("preload_app = True"))
    elif "gunicorn" in source.text.lower():
        for line, column in preloads_in_text(source.lines):
            yield Hit(line, column, facts.pool_question + _message("--preload"))


def _message(what: str) -> str:
    return (
        f"gunicorn {what} with a database pool and no post_fork hook closing it: the app loads "
        "in the master before fork, so a pool or connection opened while loading is shared by "
        "every worker"
    )
