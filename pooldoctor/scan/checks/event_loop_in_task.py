"""Async ORM code run from a Celery task with ``asyncio.run`` or ``loop.run_until_complete``.

Outside a ``ThreadSensitiveContext`` every thread-sensitive ``sync_to_async`` call (all of
Django's async ORM methods) runs on asgiref's process-wide ``SyncToAsync.single_thread_executor``,
whichever event loop awaits it: a fresh loop per task and a loop kept per worker alike (asgiref
``sync.py``, ``SyncToAsync.__call__``). That thread lives as long as the worker process, and its
Django connection (per thread: ``ConnectionHandler`` uses ``Local(thread_critical=True)``) is
opened once and never closed or returned to the pool; the task's own ``close_old_connections()``
runs in the task's thread and cannot see it. A task that dies mid-transaction leaves that
connection idle in transaction for every later task. ``async_to_sync`` does not have the problem:
it sends thread-sensitive calls back to the calling thread (``AsyncToSync.__call__``,
``CurrentThreadExecutor``), where Celery's Django fix-up closes them.
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
    ASYNC_ORM_METHODS,
    FunctionNode,
    calls,
    celery_tasks,
    dotted,
    enclosing_functions,
    is_cleanup_call,
    last_name,
    parents,
    runs_event_loop,
    statements,
    thread_sensitive_contexts,
    uses_async_orm,
)

FIX = (
    "run the coroutine with asgiref's async_to_sync (its ORM calls come back to the task's "
    "thread, where close_old_connections() reaches them), or use a wrapper that measured clean "
    "in pooldoctor check"
)
TASK_BASE_METHODS = frozenset({"__call__", "run"})


NEEDS = ("asyncio.run", "run_until_complete")


@register(__name__, "PD301", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    text = source.text
    if "asyncio.run" not in text and "run_until_complete" not in text:
        return
    if not _mentions_async_orm(text):
        return
    tree = source.tree
    if tree is None or not _uses_celery(tree) or not _uses_async_orm(tree):
        return
    parent_of = parents(tree)
    functions = functions_by_name(tree)
    tasks = set(celery_tasks(tree))
    # A Task base's __call__/run is PD302's: every task using the base inherits it.
    left_to_pd302 = {method for _, method in task_base_methods(tree)}
    for call in calls(tree):
        if not runs_event_loop(call):
            continue
        enclosing = list(enclosing_functions(call, parent_of))
        if not enclosing or left_to_pd302.intersection(enclosing):
            continue
        outer = enclosing[-1]
        reached = reached_functions(call, outer, functions)
        if any(list(thread_sensitive_contexts(f)) for f in reached):
            continue  # PD303 and PD304 judge the context's cleanup.
        if any(is_cleanup_call(c) and isinstance(c.func, ast.Call) for c in calls_in(reached)):
            continue  # sync_to_async(close_old_connections)() closes the executor's connection
        task = next((f for f in enclosing if f in tasks), None)
        where = f"Celery task {task.name!r}" if task else f"{outer.name!r}"
        yield Hit(
            call.lineno,
            call.col_offset + 1,
            f"{runner_name(call)} in {where} runs the async ORM calls on asgiref's process-wide "
            "executor thread, outside any ThreadSensitiveContext: that thread's connection is "
            "never closed or returned to the pool (pinned for the worker's life, and poisoned "
            "for every later task once a task dies mid-transaction)"
            + _confirm_hint(source, enclosing, parent_of),
        )


def task_base_methods(tree: ast.AST) -> Iterator[tuple[ast.ClassDef, FunctionNode]]:
    """``__call__`` and ``run`` of classes based on a Celery ``Task`` (``celery.Task``,
    ``app.Task``, ``Task``)."""
    for node in statements(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(last_name(b) == "Task" and dotted(b) != "asyncio.Task" for b in node.bases):
            continue
        for item in node.body:
            if isinstance(item, FunctionNode) and item.name in TASK_BASE_METHODS:
                yield node, item


def functions_by_name(tree: ast.AST) -> dict[str, FunctionNode]:
    return {n.name: n for n in statements(tree) if isinstance(n, FunctionNode)}


def reached_functions(
    run_call: ast.Call, scope: FunctionNode, functions: dict[str, FunctionNode]
) -> list[FunctionNode]:
    """``scope`` and the coroutine functions ``run_call`` runs that are defined in the same
    module (``asyncio.run(main())``, ``loop.run_until_complete(self._run(...))``)."""
    found = [scope]
    for argument in run_call.args[:1]:
        for call in calls(argument):
            target = functions.get(last_name(call.func))
            if target is not None and target not in found:
                found.append(target)
    return found


def calls_in(nodes: list[FunctionNode]) -> Iterator[ast.Call]:
    for node in nodes:
        yield from calls(node)


def _confirm_hint(
    source: SourceFile, enclosing: list[FunctionNode], parent_of: dict[ast.AST, ast.AST]
) -> str:
    hint = "; confirm with: pooldoctor check --modes asyncio-run"
    outer = enclosing[-1]
    module = import_name(source)
    if module and len(enclosing) > 1 and parent_of.get(outer) is source.tree:
        # The run call sits in a decorator's inner function (two levels) or in a decorator
        # factory's (three): the project's own wrapper, which check can measure.
        factory = "()" if len(enclosing) > 2 else ""
        hint += f" --wrapper {module}:{outer.name}{factory}"
    return hint


def runner_name(call: ast.Call) -> str:
    return "asyncio.run" if dotted(call.func) == "asyncio.run" else "run_until_complete"


def _mentions_async_orm(text: str) -> bool:
    if "sync_to_async" in text or "async for" in text:
        return True
    return any(f".{method}(" in text for method in ASYNC_ORM_METHODS)


def _uses_celery(tree: ast.Module) -> bool:
    for node in statements(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name.partition(".")[0] == "celery" for name in names):
            return True
    return any(True for _ in celery_tasks(tree))


def _uses_async_orm(tree: ast.Module) -> bool:
    if uses_async_orm(tree):
        return True
    return any(
        isinstance(n, ast.Name | ast.Attribute) and last_name(n) == "sync_to_async"
        for n in ast.walk(tree)
    )
