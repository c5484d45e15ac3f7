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

The coroutine run is followed, not the module: what ``asyncio.run(...)`` is given, and what that
awaits and calls, in the same module or imported from another project module, four calls deep.
The task is flagged when that reaches async ORM use (an async ORM method, ``async for`` over a
queryset, a thread-sensitive ``sync_to_async`` of ORM code) and the message names the path. A
runner of whatever coroutine it is handed (a decorator's wrapper, a helper taking a coroutine) is
judged by its module's async ORM use, as the coroutines it runs are that module's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.calls import FunctionSummary, Resolver, module_graph, own_nodes, short_code
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.modules import import_name
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import (
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
    tree = source.tree
    if tree is None or not _uses_celery(tree):
        return
    parent_of = parents(tree)
    functions = functions_by_name(tree)
    tasks = set(celery_tasks(tree))
    # A Task base's __call__/run is PD302's: every task using the base inherits it.
    left_to_pd302 = {method for _, method in task_base_methods(tree)}
    resolver: Resolver | None = None
    for call in calls(tree):
        if not runs_event_loop(call):
            continue
        enclosing = list(enclosing_functions(call, parent_of))
        if not enclosing or left_to_pd302.intersection(enclosing):
            continue
        outer = enclosing[-1]
        if resolver is None:
            resolver = module_graph(tree, source.module_name, source.relative, facts.calls)
        task = next((f for f in enclosing if f in tasks), None)
        where = f"Celery task {task.name!r}" if task else f"{outer.name!r}"
        hint = _confirm_hint(source, enclosing, parent_of)
        roots = coroutine_roots(call, enclosing, resolver)
        if roots is None:
            # A runner of whatever coroutine it is given (a decorator's wrapper, a helper): the
            # coroutines are this module's, so its async ORM use is what the runner runs.
            reached = reached_functions(call, outer, functions)
            if not _uses_async_orm(tree) or _cleaned(reached, []):
                continue
            yield Hit(
                call.lineno,
                call.col_offset + 1,
                f"{runner_name(call)} in {where} runs the coroutines it is given, in a module "
                "that uses the async ORM: their ORM calls run on asgiref's process-wide executor "
                f"thread, outside any ThreadSensitiveContext; {_CONSEQUENCE}" + hint,
            )
            continue
        graph = resolver.graph.with_functions([roots])
        reach = graph.reaches_async_orm([roots.name])
        if reach is None:
            continue  # the coroutine run never reaches the async ORM
        if _cleaned([outer], graph.reached([roots.name])):
            continue
        path = reach.path[1:]  # after the argument itself
        how = f"reaches {reach.what} in {reach.where} via " + " → ".join(f.short for f in path)
        yield Hit(
            call.lineno,
            call.col_offset + 1,
            f"{runner_name(call)}({short_code(call.args[0])}) in {where} "
            + (how if path else f"awaits {reach.what}")
            + ": the async ORM calls run on asgiref's process-wide executor thread, outside any "
            f"ThreadSensitiveContext; {_CONSEQUENCE}" + hint,
        )


_CONSEQUENCE = (
    "that thread's connection is never closed or returned to the pool (pinned for the worker's "
    "life, and poisoned for every later task once a task dies mid-transaction)"
)


def coroutine_roots(
    call: ast.Call, enclosing: list[FunctionNode], resolver: Resolver
) -> FunctionSummary | None:
    """What ``call`` (``asyncio.run(...)``) is given, summarised as a function whose callees are
    the coroutine functions it runs: ``main`` in ``asyncio.run(main())``, ``a`` and ``b`` in
    ``asyncio.run(gather(a(), b()))``, ``main`` after ``coro = main()``. None when the coroutine
    is one of the enclosing functions' parameters, or is called through one: a runner of any
    coroutine."""
    argument: ast.expr = call.args[0] if call.args else ast.Constant(value=None)
    parameters = {a.arg for f in enclosing for a in _arguments(f)} - {"self", "cls"}
    if isinstance(argument, ast.Name):
        if argument.id in parameters:
            return None
        argument = _assigned(argument.id, enclosing[0]) or argument
    if any(dotted(c.func).partition(".")[0] in parameters for c in calls(argument)):
        return None
    _, cls, scope = resolver.seen.get(enclosing[0], ("", None, {}))
    name = f"{resolver.module}.<{runner_name(call)} at line {call.lineno}>"
    return resolver.summarise_expression(argument, name, "", cls, scope)


def _arguments(function: FunctionNode) -> list[ast.arg]:
    args = function.args
    found = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return found + [a for a in (args.vararg, args.kwarg) if a is not None]


def _assigned(name: str, function: FunctionNode) -> ast.expr | None:
    """The value last assigned to ``name`` in ``function`` (``coro = main()``), if plain."""
    found = None
    for node in own_nodes(function):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            found = node.value
    return found


def _cleaned(scopes: list[FunctionNode], reached: list[FunctionSummary]) -> bool:
    """A ThreadSensitiveContext (PD303 and PD304 judge its cleanup) or an awaited
    ``sync_to_async(close_old_connections)()``, which closes the executor's connection, in the
    code the loop runs."""
    if any(f.thread_sensitive_context or f.cleans_executor for f in reached):
        return True
    if any(list(thread_sensitive_contexts(f)) for f in scopes):
        return True
    return any(is_cleanup_call(c) and isinstance(c.func, ast.Call) for c in calls_in(scopes))


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
