"""gunicorn's ``--preload`` with a database pool and no ``post_fork`` hook that closes it.

``preload_app`` (``--preload``) makes gunicorn "load application code before the worker processes
are forked" (gunicorn docs, settings: preload_app; gunicorn/arbiter.py, ``Arbiter.setup`` calls
``self.app.wsgi()`` before any worker is spawned). Anything that touches the database while the app
loads creates Django's pool (kept per process in ``DatabaseWrapper._connection_pools``,
django/db/backends/postgresql/base.py) and its connections in the master; every worker inherits
the same pool and the same sockets, so workers interleave their queries on one connection and read
each other's results.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import literal
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    "add a post_fork(server, worker) hook to the gunicorn config that calls close_pool() on each "
    "database connection (for conn in connections.all(): conn.close_pool()), or drop --preload"
)
_PRELOAD = re.compile(r"(?<![\w-])--preload(?![\w-])")
_COMMENT = re.compile(r"^\s*[#;].*|\s#.*")


@register(__name__, "PD311", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not facts.has_pool or facts.gunicorn_fork_hook or "preload" not in source.text:
        return
    if source.is_python:
        yield from _preload_app(source)
    elif "gunicorn" in source.text.lower():
        for number, line in enumerate(source.lines, start=1):
            for match in _PRELOAD.finditer(_COMMENT.sub("", line)):
                yield Hit(number, match.start() + 1, _message("--preload"))


def _preload_app(source: SourceFile) -> Iterator[Hit]:
    if source.tree is None:
        return
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        named = any(isinstance(t, ast.Name) and t.id == "preload_app" for t in targets)
        if named and literal(value) is True:
            yield Hit(node.lineno, node.col_offset + 1, _message("preload_app = True"))


def _message(what: str) -> str:
    return (
        f"gunicorn {what} with a database pool and no post_fork hook closing it: the app loads "
        "in the master before fork, so a pool or connection opened while loading is shared by "
        "every worker"
    )
