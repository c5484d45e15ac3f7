"""ORM code run through ``sync_to_async(..., thread_sensitive=False)``.

A thread-insensitive call runs on the event loop's default ``ThreadPoolExecutor`` (asgiref
``sync.py``, ``SyncToAsync.__call__``: ``loop.run_in_executor(None, ...)``). Each of its worker
threads opens its own Django connection (``ConnectionHandler`` uses
``Local(thread_critical=True)``), and ``asyncio.run`` shuts the executor down at the end of every
task without anything closing them (asyncio ``BaseEventLoop.shutdown_default_executor``): with a
pool, the connections are garbage-collected while checked out, up to one slot per executor thread
per task. In views (``views.py``, ``views/``, modules a URLconf imports) the same calls are
PD307's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import (
    FunctionNode,
    calls,
    dotted,
    is_false,
    keyword,
    last_name,
    statements,
    uses_sync_orm,
)

FIX = (
    "drop thread_sensitive=False around ORM code (the default, thread_sensitive=True, keeps the "
    "ORM on one thread that a ThreadSensitiveContext or async_to_sync can clean up)"
)
HINT = "; confirm with: pooldoctor check --modes thread-insensitive"


NEEDS = (("thread_sensitive", "sync_to_async", "False"),)


@register(__name__, "PD305", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "thread_sensitive" not in source.text or facts.is_view_module(source):
        return  # PD307's: on the request path the threads live on and hold their connections
    for call, what in thread_insensitive_orm_calls(source):
        yield Hit(
            call.lineno,
            call.col_offset + 1,
            f"sync_to_async(thread_sensitive=False) runs {what} on the event loop's default "
            "executor: each of its threads opens its own connection, and asyncio.run shuts "
            "the threads down without closing them" + HINT,
        )


def thread_insensitive_orm_calls(source: SourceFile) -> Iterator[tuple[ast.Call, str]]:
    """Each ``sync_to_async(..., thread_sensitive=False)`` call that runs ORM code, with how to
    name that code in a message."""
    if "thread_sensitive" not in source.text or "sync_to_async" not in source.text:
        return
    tree = source.tree
    if tree is None:
        return
    functions = {n.name: n for n in statements(tree) if isinstance(n, FunctionNode)}
    decorated = {d: f for f in functions.values() for d in f.decorator_list}
    applied = {c.func: c for c in calls(tree) if isinstance(c.func, ast.Call)}
    for call in calls(tree):
        if last_name(call.func) != "sync_to_async":
            continue
        if not is_false(keyword(call, "thread_sensitive")):
            continue
        if call.args:
            # sync_to_async(Model.objects.get, thread_sensitive=False)
            what = _orm_target(call.args[0], functions)
        elif call in decorated:
            # @sync_to_async(thread_sensitive=False) on a def
            function = decorated[call]
            what = f"{function.name}()" if uses_sync_orm(_body(function)) else None
        elif call in applied and applied[call].args:
            # sync_to_async(thread_sensitive=False)(get_user)
            what = _orm_target(applied[call].args[0], functions)
        else:
            what = None
        if what is not None:
            yield call, what


def _orm_target(node: ast.expr, functions: dict[str, FunctionNode]) -> str | None:
    """How to name ``node`` in the message if it touches the ORM, else None."""
    if isinstance(node, ast.Call) and last_name(node.func) == "partial" and node.args:
        return _orm_target(node.args[0], functions)
    if isinstance(node, ast.Lambda):
        return "a lambda using the ORM" if uses_sync_orm(node.body) else None
    name = dotted(node)
    if isinstance(node, ast.Attribute) and uses_sync_orm(node):
        return name
    # A function of this module, by name or as self.method / cls.method.
    base, _, attr = name.rpartition(".")
    if base in {"", "self", "cls"} and attr in functions:
        return f"{name}()" if uses_sync_orm(_body(functions[attr])) else None
    return None


def _body(function: FunctionNode) -> ast.Module:
    return ast.Module(body=function.body, type_ignores=[])
