"""How a wrapper runs the task, read from its syntax tree.

Three shapes, each with the built-in modes whose pattern is closest to it (first = smallest
change):

- ``asyncio-run``: a sync function calls ``asyncio.run(CALL)`` or ``loop.run_until_complete(CALL)``
  where CALL is ``func(*args, **kwargs)`` (or a local coroutine function with no
  ``ThreadSensitiveContext``). The ORM runs on asgiref's process-wide thread, which nothing
  cleans (mode ``asyncio-run``). Closest: ``async-to-sync`` (the call becomes
  ``async_to_sync(func)(*args, **kwargs)``, with ``close_old_connections()`` in a ``finally``),
  then ``thread-sensitive-context-closed``.
- ``async-to-sync``: ``async_to_sync(func)(...)`` (or an ``AsyncToSync`` object called) with no
  ``close_old_connections()`` in a ``finally`` around it: the ORM comes back to the calling thread
  and keeps its connection there. Closest: ``async-to-sync``.
- ``thread-sensitive-context``: ``asyncio.run`` of a local coroutine function that enters
  ``async with ThreadSensitiveContext()`` and closes nothing on the context's thread, which ends
  holding its connection (mode ``thread-sensitive-context``). Closest:
  ``thread-sensitive-context-closed`` (``owned-executor`` when the context is given an executor).
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

from pooldoctor.core.fixes import CannotPatch

RUN = "asyncio-run"
ASYNC_TO_SYNC = "async-to-sync"
CONTEXT = "thread-sensitive-context"

# The built-in modes (by name) whose pattern each shape can be rewritten into, closest first.
PATTERNS: dict[str, tuple[str, ...]] = {
    RUN: ("async-to-sync", "thread-sensitive-context-closed"),
    ASYNC_TO_SYNC: ("async-to-sync",),
    CONTEXT: ("thread-sensitive-context-closed",),
}
OWNED_EXECUTOR = ("owned-executor",)


@dataclasses.dataclass(frozen=True, eq=False)
class Shape:
    """Where and how one function runs the task."""

    kind: str
    """:data:`RUN`, :data:`ASYNC_TO_SYNC` or :data:`CONTEXT`."""
    call: ast.Call
    """The call that runs the coroutine (``asyncio.run(...)``, ``async_to_sync(f)(...)``)."""
    statement: ast.stmt
    """The statement holding that call."""
    parents: dict[ast.AST, ast.AST]
    context: ast.AsyncWith | None = None
    """The ``async with ThreadSensitiveContext()`` (shape :data:`CONTEXT`)."""
    closed: bool = False
    """Whether the connection is already closed where it lives: ``close_old_connections()`` in a
    ``finally`` around the statement, or on the context's own thread."""

    @property
    def patterns(self) -> tuple[str, ...]:
        if self.context is not None and any(
            k.arg == "executor" for k in context_call(self).keywords
        ):
            return OWNED_EXECUTOR
        return PATTERNS[self.kind]

    @property
    def words(self) -> str:
        """The shape in words, for a report."""
        call = ast.unparse(self.call)
        if self.kind == CONTEXT:
            closes = "closes" if self.closed else "closes nothing"
            return f"runs {call} inside a ThreadSensitiveContext and {closes} on its thread"
        if self.kind == RUN:
            return f"runs {call}: the ORM runs on asgiref's process-wide thread, never cleaned"
        closes = "" if self.closed else " with no close_old_connections() in a finally"
        return f"runs {call}{closes}"


def context_call(shape: Shape) -> ast.Call:
    assert shape.context is not None
    expr = shape.context.items[0].context_expr
    assert isinstance(expr, ast.Call)
    return expr


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def resolve(name: str | None, namespace: dict[str, Any]) -> Any:
    """What a dotted name means in the module's globals (None when it cannot be told)."""
    if not name:
        return None
    head, *rest = name.split(".")
    obj = namespace.get(head)
    for part in rest:
        try:
            obj = getattr(obj, part, None)
        except Exception:  # a lazy object (django.db.connection) that needs settings
            return None
    return obj


def is_asyncio_run(call: ast.Call, namespace: dict[str, Any]) -> bool:
    name = dotted(call.func)
    if name is not None and resolve(name, namespace) is asyncio.run:
        return True
    if name == "asyncio.run":
        return True
    return isinstance(call.func, ast.Attribute) and call.func.attr == "run_until_complete"


def _is_async_to_sync_factory(node: ast.AST, namespace: dict[str, Any]) -> bool:
    from asgiref.sync import AsyncToSync, async_to_sync

    name = dotted(node)
    if name is None:
        return False
    obj = resolve(name, namespace)
    if obj is async_to_sync or obj is AsyncToSync:
        return True
    return obj is None and name.rsplit(".", 1)[-1] in ("async_to_sync", "AsyncToSync")


def is_thread_sensitive_context(node: ast.AST, namespace: dict[str, Any]) -> bool:
    from asgiref.sync import ThreadSensitiveContext

    if not isinstance(node, ast.Call):
        return False
    name = dotted(node.func)
    obj = resolve(name, namespace)
    return obj is ThreadSensitiveContext or (
        obj is None and name is not None and name.endswith("ThreadSensitiveContext")
    )


def calls(node: ast.AST) -> Iterator[ast.Call]:
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            yield child


def calls_named(nodes: list[ast.stmt], name: str) -> bool:
    """Whether any of ``nodes`` calls something whose name ends with ``name``."""
    return any((dotted(c.func) or "").rsplit(".", 1)[-1] == name for n in nodes for c in calls(n))


def closes_on_thread(nodes: list[ast.stmt]) -> bool:
    """``await sync_to_async(close_old_connections)()`` among ``nodes``."""
    for node in nodes:
        for call in calls(node):
            bridge = call.func
            if (
                isinstance(bridge, ast.Call)
                and (dotted(bridge.func) or "").endswith("sync_to_async")
                and any((dotted(a) or "").endswith("close_old_connections") for a in bridge.args)
            ):
                return True
    return False


def parent_map(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def statement_of(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.stmt:
    while not isinstance(node, ast.stmt):
        node = parents[node]
    return node


def enclosing_try(statement: ast.stmt, parents: dict[ast.AST, ast.AST]) -> ast.Try | None:
    """The ``try`` whose body holds ``statement`` directly and which has a ``finally``."""
    parent = parents.get(statement)
    if isinstance(parent, ast.Try) and statement in parent.body and parent.finalbody:
        return parent
    return None


def find(tree: ast.Module, namespace: dict[str, Any]) -> Shape | None:
    """The shape of the one place ``tree`` runs a coroutine from sync code; None if it has none.

    Raises :class:`CannotPatch` for a place pooldoctor does not know how to rewrite."""
    parents = parent_map(tree)
    coroutine_functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)}
    # Names bound to an AsyncToSync object in the function: ``sync_call = AsyncToSync(func)``.
    bridges = {
        t.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Call)
        and _is_async_to_sync_factory(n.value.func, namespace)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    found: list[Shape] = []
    for call in calls(tree):
        if is_asyncio_run(call, namespace):
            found.append(_run_shape(call, parents, coroutine_functions, namespace))
        elif (
            isinstance(call.func, ast.Call) and _is_async_to_sync_factory(call.func.func, namespace)
        ) or (isinstance(call.func, ast.Name) and call.func.id in bridges):
            statement = statement_of(call, parents)
            if isinstance(statement, ast.Assign) and call is statement.value and not call.args:
                continue  # ``sync_call = AsyncToSync(func)``: the bridge, not the run
            found.append(_bridge_shape(call, statement, parents))
    if len(found) > 1:
        lines = ", ".join(str(s.call.lineno) for s in found)
        raise CannotPatch(f"it runs async code in {len(found)} places (lines {lines} of its def)")
    return found[0] if found else None


def _bridge_shape(call: ast.Call, statement: ast.stmt, parents: dict[ast.AST, ast.AST]) -> Shape:
    around = enclosing_try(statement, parents)
    closed = around is not None and calls_named(around.finalbody, "close_old_connections")
    return Shape(ASYNC_TO_SYNC, call, statement, parents, closed=closed)


def _run_shape(
    call: ast.Call,
    parents: dict[ast.AST, ast.AST],
    coroutine_functions: dict[str, ast.AsyncFunctionDef],
    namespace: dict[str, Any],
) -> Shape:
    statement = statement_of(call, parents)
    if len(call.args) != 1 or call.keywords or not isinstance(call.args[0], ast.Call):
        raise CannotPatch(
            f"it calls {ast.unparse(call)}: pooldoctor rewrites a call of the task itself, "
            "such as asyncio.run(func(*args, **kwargs))"
        )
    inner = call.args[0]
    local = coroutine_functions.get(dotted(inner.func) or "")
    if local is not None:
        for node in ast.walk(local):
            if isinstance(node, ast.AsyncWith) and is_thread_sensitive_context(
                node.items[0].context_expr, namespace
            ):
                closed = _closed_in_context(node)
                return Shape(CONTEXT, call, statement, parents, context=node, closed=closed)
    return Shape(RUN, call, statement, parents)


def _closed_in_context(context: ast.AsyncWith) -> bool:
    body = context.body
    return (
        len(body) == 1
        and isinstance(body[0], ast.Try)
        and bool(body[0].finalbody)
        and closes_on_thread(body[0].finalbody)
    )
