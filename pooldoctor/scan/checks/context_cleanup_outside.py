"""A per-task ``ThreadSensitiveContext`` whose connection cleanup never runs on its thread.

The widely shared recipe: ``async with ThreadSensitiveContext()`` around the task, and
``close_old_connections()`` in the calling thread before and after ``asyncio.run``. Django's
connections are per thread (``ConnectionHandler`` uses ``Local(thread_critical=True)``), so that
cleanup never sees the connection opened on the context's own ORM thread; the thread ends at the
context's exit and its pooled connection is garbage-collected while checked out, a pool slot lost
per task (asgiref ``sync.py``, ``ThreadSensitiveContext``; Django ticket #32889;
``django/core/handlers/asgi.py`` runs ``request_finished`` on that thread instead).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.modules import import_name
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import (
    calls,
    enclosing_functions,
    is_cleanup_call,
    last_name,
    outermost_function,
    parents,
    statements,
)

FIX = (
    "await sync_to_async(close_old_connections)() inside the ThreadSensitiveContext, in a "
    "finally block, so the connection goes back on the thread that opened it"
)


NEEDS = ("ThreadSensitiveContext",)


@register(__name__, "PD303", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    for block, parent_of in task_contexts(source):
        if not list(cleanups_on_context_thread(block)):
            outside = _cleanup_outside(block, parent_of)
            where = (
                f" (the cleanup at line {outside} runs in the calling thread)" if outside else ""
            )
            yield Hit(
                block.lineno,
                block.col_offset + 1,
                "ThreadSensitiveContext: nothing closes the connection on the context's own "
                f"thread before it exits{where}; each task loses a pool slot"
                + confirm_hint(source, block, parent_of),
            )


def task_contexts(source: SourceFile) -> Iterator[tuple[ast.AsyncWith, dict[ast.AST, ast.AST]]]:
    """``async with ThreadSensitiveContext(...)`` blocks outside ASGI code (middleware and
    handlers get ``request_finished`` on the right thread from Django)."""
    if "ThreadSensitiveContext" not in source.text or source.tree is None:
        return
    parent_of = parents(source.tree)
    for node in statements(source.tree):
        if not isinstance(node, ast.AsyncWith):
            continue
        if not any(last_name(item.context_expr) == "ThreadSensitiveContext" for item in node.items):
            continue
        if _in_asgi_code(node, parent_of):
            continue
        yield node, parent_of


def cleanups_on_context_thread(block: ast.AsyncWith) -> Iterator[ast.Call]:
    """``await sync_to_async(close_old_connections)()`` (or close_all/close) inside the block."""
    for call in calls(ast.Module(body=block.body, type_ignores=[])):
        if isinstance(call.func, ast.Call) and is_cleanup_call(call):
            yield call


def confirm_hint(source: SourceFile, node: ast.AST, parent_of: dict[ast.AST, ast.AST]) -> str:
    outer = outermost_function(node, parent_of)
    module = import_name(source)
    if outer is None or parent_of.get(outer) is not source.tree or module is None:
        return ""
    return f"; confirm with: pooldoctor check --wrapper {module}:{outer.name}"


def _cleanup_outside(block: ast.AsyncWith, parent_of: dict[ast.AST, ast.AST]) -> int | None:
    for function in enclosing_functions(block, parent_of):
        for call in calls(function):
            if is_cleanup_call(call) and not _inside(call, block, parent_of):
                return call.lineno
    return None


def _inside(node: ast.AST, ancestor: ast.AST, parent_of: dict[ast.AST, ast.AST]) -> bool:
    current = parent_of.get(node)
    while current is not None:
        if current is ancestor:
            return True
        current = parent_of.get(current)
    return False


def _in_asgi_code(node: ast.AST, parent_of: dict[ast.AST, ast.AST]) -> bool:
    for function in enclosing_functions(node, parent_of):
        names = {a.arg for a in function.args.args}
        if {"scope", "receive", "send"} <= names or "get_response" in names:
            return True
    current = parent_of.get(node)
    while current is not None:
        if isinstance(current, ast.ClassDef) and (
            "Middleware" in current.name or "Consumer" in current.name
        ):
            return True
        current = parent_of.get(current)
    return False
