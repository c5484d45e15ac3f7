"""A database query at import time or in ``AppConfig.ready()``, in a project that forks workers.

Module-level code and ``ready()`` run in the parent process: Celery's main process imports the
task modules and runs ``django.setup()`` before forking its prefork children, and gunicorn's
master does the same with ``--preload``. A query there opens the connection, and with
``OPTIONS["pool"]`` the pool, in the parent (django/db/backends/postgresql/base.py,
``DatabaseWrapper.pool``), and every child inherits both: the children share the same sockets.
Django's own docs warn against it: "avoid interacting with the database in your ready()
implementation" (docs/ref/applications.txt, ``AppConfig.ready``).

Querysets are lazy, so only what runs a query is flagged: ``.get()``/``.count()``/``.first()``...,
iterating or ``list()``-ing a queryset, ``connection.cursor()``, ``connections[alias].cursor()``,
``connection.introspection``. Code in functions and class bodies is not flagged (it runs later, or
defines a model or form), nor a module that calls ``django.setup()`` itself (a standalone script).

A query in a module that a preloaded gunicorn app loads is PD315's (an error, on the
``--preload`` line) when gunicorn is the only host that forks.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.queries import calls_django_setup, executed, query, ready_methods, shorten
from pooldoctor.scan.source import SourceFile

FIX = (
    "run the query where it is needed (in the function or task, cached if it must run once), "
    "or close what it opened right away: connection.close() and connection.close_pool()"
)


NEEDS = ("objects", "connection")


@register(__name__, "PD314", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not (facts.pool_may_be_on and facts.forks_workers):
        return
    if ("objects" not in source.text and "connection" not in source.text) or source.tree is None:
        return
    if "setup" in source.text and calls_django_setup(source.tree):
        return
    # PD315 names these queries, on the --preload line, when gunicorn is the only forking host.
    covered = set()
    if facts.preload_shares_import_query and not facts.uses_celery:
        covered = {q.line for q in facts.app_import_queries if q.file == source.relative}
    places = [(executed(source.tree.body), "at import time")]
    if "AppConfig" in source.text and "ready" in source.text:
        ready = ready_methods(source.tree)
        places += [(executed(r.body), "in AppConfig.ready()") for r in ready]
    for nodes, where in places:
        lines: set[int] = set()
        for node in nodes:
            found = query(node)
            if found is not None and found.lineno not in lines | covered:
                lines.add(found.lineno)
                yield Hit(
                    found.lineno,
                    found.col_offset + 1,
                    f"{facts.pool_question}database query {where} ({shorten(found)}): it "
                    "opens the connection and the pool in the parent process, and every forked "
                    "worker inherits them",
                )
