"""A Celery ``Task`` base class whose ``__call__`` or ``run`` runs an event loop.

Every task declared with ``base=`` that class (or ``app.Task`` replaced by it) runs its coroutine
through the loop, so one class decides the connection handling of all of them. Outside a
``ThreadSensitiveContext`` the async ORM calls go to asgiref's process-wide
``SyncToAsync.single_thread_executor`` whose connection is never closed or returned to the pool
(asgiref ``sync.py``, ``SyncToAsync.__call__``); inside one with no cleanup on its own thread the
context's thread ends holding a pooled connection, a slot lost per task (``ThreadSensitiveContext``;
Django ticket #32889). Celery calls the base's ``__call__`` for every task run
(celery/app/trace.py, ``build_tracer``; celery/app/task.py, ``Task.__call__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.calls import Resolver, module_graph
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.context_cleanup_outside import cleanups_on_context_thread
from pooldoctor.scan.checks.event_loop_in_task import (
    calls_in,
    coroutine_roots,
    functions_by_name,
    reached_functions,
    runner_name,
    task_base_methods,
)
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import (
    FunctionNode,
    calls,
    is_cleanup_call,
    runs_event_loop,
    thread_sensitive_contexts,
)

FIX = (
    "run the coroutine with asgiref's async_to_sync and close_old_connections() after it, or "
    "enter a ThreadSensitiveContext and await sync_to_async(close_old_connections)() in a "
    "finally block inside it"
)


NEEDS = (("Task", "asyncio.run"), ("Task", "run_until_complete"))


@register(__name__, "PD302", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    text = source.text
    if "Task" not in text or ("asyncio.run" not in text and "run_until_complete" not in text):
        return
    tree = source.tree
    if tree is None:
        return
    functions = functions_by_name(tree)
    resolver: Resolver | None = None
    for cls, method in task_base_methods(tree):
        for call in calls(method):
            if not runs_event_loop(call):
                continue
            if resolver is None:
                resolver = module_graph(tree, source.module_name, source.relative, facts.calls)
            reached = reached_functions(call, method, functions)
            contexts = [c for f in reached for c in thread_sensitive_contexts(f)]
            if any(list(cleanups_on_context_thread(c)) for c in contexts):
                continue  # cleaned up on the context's thread; PD304 judges whether always
            if not contexts and any(
                is_cleanup_call(c) and isinstance(c.func, ast.Call) for c in calls_in(reached)
            ):
                continue  # sync_to_async(close_old_connections)() closes the executor's connection
            # The coroutine may be wrapped by the project's own runner in another module
            # (asyncio.run(with_cleanup(self.run(...)))): followed there, a context with its
            # cleanup, or the executor's cleanup, makes it safe as above.
            given = coroutine_roots(call, [method], resolver)
            roots = list(given.callees) if given else []
            if any(f.cleans_executor for f in resolver.graph.reached(roots)):
                continue
            yield Hit(call.lineno, call.col_offset + 1, _message(cls, method, call, contexts))


def _message(
    cls: ast.ClassDef, method: FunctionNode, call: ast.Call, contexts: list[ast.AsyncWith]
) -> str:
    lead = f"Celery Task base {cls.name!r} runs {runner_name(call)} in {method.name}: every task "
    if contexts:
        return (
            lead + "using this base ends its ThreadSensitiveContext with nothing closing the "
            "connection on the context's thread, and loses a pool slot; confirm with: "
            "pooldoctor check --modes thread-sensitive-context"
        )
    return (
        lead + "using this base runs its async ORM calls on asgiref's process-wide executor "
        "thread, whose connection is never closed or returned to the pool; confirm with: "
        "pooldoctor check --modes asyncio-run"
    )
