"""A task runner that forks after loading the project, a query while it loads, and a pool.

django-rq's ``rqworker``/``rqworker-pool``, django-q2's ``qcluster`` and Huey's ``run_huey`` are
management commands: ``django.setup()`` runs in the parent (settings, every app's ``apps.py`` and
models, ``ready()``, admin's ``admin.py``) before it forks. RQ's default ``Worker`` forks a work
horse per job (rq/worker/worker_classes.py, ``Worker.fork_work_horse``: ``os.fork()``), the
django-q cluster forks its workers (django_q/cluster.py, a ``fork`` context), and Huey's process
workers are forked (huey/consumer.py, ``ProcessEnvironment``: ``get_context('fork')``). A query
while the project loads opens the connection, and with ``OPTIONS["pool"]`` the pool, in the
parent. django-rq (``reset_db_connections``) and django-q (``connections.close_all()`` before
spawning) close the parent's connections first, but with a pool closing only hands the
connection back to the pool, which stays open with its sockets: every child inherits it and
they share the same server sessions. ``run_huey`` closes nothing.

Reported once per runner, on the command that starts it (Procfile, compose, systemd,
supervisord, Kubernetes, heroku.yml, scripts), else on its setting (``RQ_QUEUES``,
``Q_CLUSTER``, ``HUEY["consumer"]["worker_type"] = "process"``). Not flagged: RQ's
``SimpleWorker``/``SpawnWorker`` (``--worker-class`` or ``RQ["WORKER_CLASS"]``), a project's own
worker class (not known), Huey's thread and greenlet workers (the default), django-q's
``"sync": True``, Dramatiq (its CLI loads the project in each worker, after the fork), and the
Tasks framework's ``db_worker`` (it does not fork). The queries counted are those of the modules
``django.setup()`` loads; a WSGI/ASGI module or middleware is not loaded by these commands.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts, Query
from pooldoctor.scan.runners import DJANGO_Q, HUEY, RQ, Runner, forking
from pooldoctor.scan.source import SourceFile

FIX = (
    "run the query where it is needed (in the task, cached if it must run once), or close "
    "what it opened right after it, in the parent: connection.close() then "
    "connection.close_pool(); or run workers that do not fork (RQ: --worker-class "
    "rq.worker.SimpleWorker; Huey: -k thread)"
)
# Loaded by the WSGI/ASGI handler only, not by a management command.
_NOT_LOADED = re.compile(r"(?:^|/)(?:wsgi|asgi|middlewares?)\.py$|(?:^|/)middleware/")
_CHILDREN = {
    RQ: "RQ's Worker forks a work horse per job",
    DJANGO_Q: "the django-q cluster forks its workers",
    HUEY: "Huey's process workers are forked",
}
_CLOSES = {
    RQ: "django-rq closes the parent's connection first, which only hands it back to the pool",
    DJANGO_Q: "django-q closes the parent's connections first, which only hands them back to "
    "the pool",
    HUEY: "run_huey closes nothing",
}


NEEDS = ("rqworker", "qcluster", "run_huey", "RQ_QUEUES", "Q_CLUSTER", "worker_type")


@register(__name__, "PD317", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    mine = [r for r in facts.runners if r.file == source.relative]
    if not mine or not facts.pool_may_be_on:
        return
    queries = [q for q in facts.app_import_queries if not _NOT_LOADED.search(q.file)]
    if not queries:
        return
    for runner in forking(facts.runners):
        if runner.file == source.relative:
            yield Hit(runner.line, runner.column, facts.pool_question + _message(runner, queries))


def _message(runner: Runner, queries: list[Query]) -> str:
    first, *rest = queries
    more = f", and {len(rest)} more" if rest else ""
    return (
        f"{runner.what}: {_CHILDREN[runner.kind]} after django.setup() ran a query in the "
        f"parent ({first.text} at {first.where}{more}); {_CLOSES[runner.kind]}, so the pool "
        "stays open and every child inherits its connections and shares their sockets"
    )
