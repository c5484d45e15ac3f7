"""A ``DRAMATIQ_BROKER`` setting whose middleware leaves out django_dramatiq's connection cleanup.

django_dramatiq builds the broker from ``settings.DRAMATIQ_BROKER`` with exactly the middleware
its ``"MIDDLEWARE"`` lists (django_dramatiq/apps.py, ``DjangoDramatiqConfig.__init__``:
``broker_settings.get("MIDDLEWARE", [])``); only its own default, used when the setting is
absent, includes ``django_dramatiq.middleware.DbConnectionsMiddleware``, which calls
``close_old_connections()`` before and after every message and ``connections.close_all()`` when
a worker thread stops (django_dramatiq/middleware.py). Without it nothing closes a worker
thread's connection: each of the worker's threads keeps its connection (with a pool, a slot)
for the life of the process whatever ``CONN_MAX_AGE`` says, and a connection left broken by a
failed message or a server restart is handed to every later message on that thread.

Flagged on the ``"MIDDLEWARE"`` key (on ``DRAMATIQ_BROKER`` when the key is missing) of a
module-level ``DRAMATIQ_BROKER = {...}``. Not flagged when the list names
``DbConnectionsMiddleware`` or a class of the project's whose name says it handles connections
(``...DbConnectionMiddleware``), when the module names ``DbConnectionsMiddleware`` anywhere
(added later, ``DRAMATIQ_BROKER["MIDDLEWARE"].append(...)``), or when the list is not written
out (a name scan cannot follow).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import literal
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

MIDDLEWARE = "django_dramatiq.middleware.DbConnectionsMiddleware"
FIX = f'add "{MIDDLEWARE}" to DRAMATIQ_BROKER["MIDDLEWARE"]'


NEEDS = (("DRAMATIQ_BROKER", "{"),)


@register(__name__, "PD318", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    text = source.text
    if "DRAMATIQ_BROKER" not in text or "DbConnectionsMiddleware" in text:
        return
    if source.tree is None:
        return
    for node in source.tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Dict):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        target = next(
            (t for t in targets if isinstance(t, ast.Name) and t.id == "DRAMATIQ_BROKER"), None
        )
        if target is None:
            continue
        where, message = _missing(target, node.value)
        if message:
            yield Hit(where.lineno, where.col_offset + 1, message)


def _missing(target: ast.Name, broker: ast.Dict) -> tuple[ast.expr, str]:
    """Where to report and what, or an empty message when the cleanup is there (or unknown)."""
    for key, value in zip(broker.keys, broker.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "MIDDLEWARE":
            names = literal(value)
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                return key, ""  # not written out: scan cannot tell
            if any("connection" in str(n).rpartition(".")[2].lower() for n in names):
                return key, ""
            return key, (
                f'DRAMATIQ_BROKER["MIDDLEWARE"] leaves out {MIDDLEWARE}: django_dramatiq '
                "installs only the middleware listed, so nothing closes a worker thread's "
                "connection between messages; each thread keeps it (with a pool, a slot) for "
                "the life of the worker, and a connection broken by a failed message or a "
                "server restart is handed to every later message on that thread"
            )
    return target, (
        'DRAMATIQ_BROKER has no "MIDDLEWARE": django_dramatiq then installs no middleware at '
        f"all, {MIDDLEWARE} included, so nothing closes a worker thread's connection between "
        "messages; each thread keeps it (with a pool, a slot) for the life of the worker, and a "
        "connection broken by a failed message or a server restart is handed to every later "
        "message on that thread"
    )
