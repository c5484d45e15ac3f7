"""ORM code run through ``sync_to_async(..., thread_sensitive=False)``.

A thread-insensitive call runs on the event loop's default ``ThreadPoolExecutor`` (asgiref
``sync.py``, ``SyncToAsync.__call__``: ``loop.run_in_executor(None, ...)``). Each of its worker
threads opens its own Django connection (``ConnectionHandler`` uses
``Local(thread_critical=True)``), and nothing closes them: a long-lived loop keeps the threads
and their connections, and ``asyncio.run`` shuts the executor down at the end of every task
(asyncio ``BaseEventLoop.shutdown_default_executor``): with a pool, the connections are
garbage-collected while checked out, up to one slot per executor thread per task. In views
(``views.py``, ``views/``, modules a URLconf imports) the same calls are PD307's.

The function run is followed (through the project's calls, imported ones included, four deep):
it is flagged when it reaches the ORM, and not when it, or a function on the way to the ORM,
closes its connections in a ``finally`` (``connections.close_all()``, ``close_old_connections()``,
``connection.close()``): they are then closed on the executor thread before the call returns.
The message mentions ``asyncio.run`` only when the module runs one, or defines an async task of
the Tasks framework (``django.tasks``/``django_tasks`` ``@task`` on an ``async def``), which runs
it through ``async_to_sync``: a fresh ``asyncio.run`` per run (django_tasks/base.py, ``Task.call``;
asgiref ``AsyncToSync.__call__``).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.calls import Reach, Resolver, module_graph, offloaded_orm
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
    runs_event_loop,
    statements,
)

FIX = (
    "drop thread_sensitive=False around ORM code (the default, thread_sensitive=True, keeps the "
    "ORM on one thread that a ThreadSensitiveContext or async_to_sync can clean up)"
)
HINT = "; confirm with: pooldoctor check --modes thread-insensitive"
TASKS_MODULES = ("django.tasks.", "django_tasks.")


NEEDS = (("thread_sensitive", "sync_to_async", "False"),)


@register(__name__, "PD305", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "thread_sensitive" not in source.text or facts.is_view_module(source):
        return  # PD307's: on the request path the threads live on and hold their connections
    tree = source.tree
    runs_loop = tree is not None and any(
        runs_event_loop(c) and dotted(c.func) == "asyncio.run" for c in calls(tree)
    )
    fate = (
        "and asyncio.run shuts the threads down without closing them"
        if runs_loop
        else "and async_to_sync, which runs the Tasks framework's async tasks, shuts them down "
        "after every run (asyncio.run) without closing them"
        if tree is not None and _django_async_task(tree)
        # No asyncio.run here: the loop (an ASGI server's, a worker's) keeps its executor.
        else "which stays open for as long as the loop keeps the thread, and is not closed when "
        "the loop shuts its executor down"
    )
    for offload in thread_insensitive_orm_calls(source, facts):
        yield Hit(
            offload.call.lineno,
            offload.call.col_offset + 1,
            f"sync_to_async(thread_sensitive=False) runs {offload.what} on the event loop's "
            f"default executor: each of its threads opens its own connection, {fate}"
            + offload.note
            + HINT,
        )


@dataclasses.dataclass(frozen=True)
class Offload:
    """A ``sync_to_async(..., thread_sensitive=False)`` call that runs ORM code."""

    call: ast.Call
    what: str
    """How to name the code run: ``Order.objects.get``, ``load()``, ``sync_orders() (which
    reaches Order.objects in mysite/services.py:12 via sync_orders() → load())``."""
    note: str = ""
    """What the message adds: a cleanup that runs only on success."""


def thread_insensitive_orm_calls(source: SourceFile, facts: Facts) -> Iterator[Offload]:
    """Each ``sync_to_async(..., thread_sensitive=False)`` call that runs ORM code and does not
    close its thread's connections in a ``finally`` (the function run, or one it calls on the way
    to the ORM: the connection is closed on the executor thread before the call returns)."""
    if "thread_sensitive" not in source.text or "sync_to_async" not in source.text:
        return
    tree = source.tree
    if tree is None:
        return
    resolver = module_graph(tree, source.module_name, source.relative, facts.calls)
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
            found = _orm_target(call.args[0], functions, resolver)
        elif call in decorated:
            # @sync_to_async(thread_sensitive=False) on a def
            found = _function_target(decorated[call], resolver)
        elif call in applied and applied[call].args:
            # sync_to_async(thread_sensitive=False)(get_user)
            found = _orm_target(applied[call].args[0], functions, resolver)
        else:
            found = None
        if found is not None:
            what, reach = found
            path = reach.path if reach else ()
            if any(f.closes == "finally" for f in path):
                continue  # closed on the executor thread before the call returns
            closing = next((f for f in path if f.closes == "body"), None)
            note = (
                f" ({closing.short} closes its connections only when it returns normally, "
                "not in a finally)"
                if closing
                else ""
            )
            yield Offload(call, what, note)


def _orm_target(
    node: ast.expr, functions: dict[str, FunctionNode], resolver: Resolver
) -> tuple[str, Reach | None] | None:
    """How to name ``node`` in the message if it touches the ORM (and the path there when it
    is a function), else None."""
    if isinstance(node, ast.Call) and last_name(node.func) == "partial" and node.args:
        return _orm_target(node.args[0], functions, resolver)
    inline = offloaded_orm(node)
    if inline:
        return inline, None
    name = dotted(node)
    # A function of this module, by name or as self.method / cls.method.
    base, _, attr = name.rpartition(".")
    if base in {"", "self", "cls"} and attr in functions:
        found = _function_target(functions[attr], resolver, name)
        if found is not None:
            return found
    target = resolver.resolve(node, None, {})
    if target is None:
        return None
    reach = resolver.graph.reaches_sync_orm([target])
    return (_describe(f"{name}()", reach), reach) if reach else None


def _function_target(
    function: FunctionNode, resolver: Resolver, name: str | None = None
) -> tuple[str, Reach | None] | None:
    qualified = resolver.seen.get(function, ("", None, {}))[0]
    reach = resolver.graph.reaches_sync_orm([qualified]) if qualified else None
    if reach is None:
        return None
    return _describe(f"{name or function.name}()", reach), reach


def _django_async_task(tree: ast.Module) -> bool:
    """An ``async def`` decorated with the Tasks framework's ``task``."""
    names = {
        a.asname or a.name
        for n in statements(tree)
        if isinstance(n, ast.ImportFrom) and f"{n.module}.".startswith(TASKS_MODULES)
        for a in n.names
    }
    return any(
        isinstance(n, ast.AsyncFunctionDef)
        and any(dotted(d).partition(".")[0] in names for d in n.decorator_list)
        for n in statements(tree)
    )


def _describe(what: str, reach: Reach) -> str:
    if len(reach.path) == 1:
        return what
    return f"{what} (which reaches {reach.what} in {reach.where} via {reach.via})"
