"""ORM code handed to a thread pool: ``asyncio.to_thread``, ``run_in_executor``, a
``ThreadPoolExecutor``'s ``submit``/``map``.

Django keeps a connection per thread (``ConnectionHandler`` uses ``Local(thread_critical=True)``)
and closes it only where a request or a task runner says so, on that runner's own thread (Celery's
fix-up, django-rq, django-q, djhuey's ``db_task``, dramatiq's ``DbConnectionsMiddleware``,
``db_worker``: ``close_old_connections()``). A thread of a pool runs none of that: the first ORM
call opens a connection on it, and nothing closes it. It is held for as long as the thread lives,
and lost when the thread ends (``asyncio.run`` and ``async_to_sync`` shut their loop's default
executor down at the end of every run; a ``with ThreadPoolExecutor()`` block joins its threads on
exit): with ``OPTIONS["pool"]`` the connection is garbage-collected while checked out, one pool
slot per thread per run. The async counterpart, ``sync_to_async(thread_sensitive=False)``, is
PD305's (PD307's in views).

The function run is followed through the project's calls (four deep). Not flagged: a function
that, or one on its way to the ORM, closes its connections in a ``finally`` (on the pool's thread,
before it returns), and a module that uses a ``ProcessPoolExecutor`` (``run_in_executor``'s
executor may be one).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.calls import module_graph
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.thread_insensitive_orm import _orm_target
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import FunctionNode, calls, dotted, last_name, statements, walk

FIX = (
    "close the thread's connections in a finally inside the function the pool runs "
    "(try: ... finally: connections.close_all()), or run the ORM code on the caller's thread "
    "(async code: await sync_to_async(f)(), thread-sensitive)"
)
POOL = "ThreadPoolExecutor"


NEEDS = ("to_thread", "run_in_executor", (POOL, "submit"), (POOL, ".map("))


@register(__name__, "PD320", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    text = source.text
    if not any(w in text for w in ("to_thread", "run_in_executor", POOL)) or source.tree is None:
        return
    tree = source.tree
    pools = _thread_pools(tree) if POOL in text else set()
    processes = "ProcessPoolExecutor" in text
    resolver = None
    functions = {n.name: n for n in statements(tree) if isinstance(n, FunctionNode)}
    for call in calls(tree):
        found = _handed(call, pools, processes)
        if found is None:
            continue
        how, target = found
        if resolver is None:
            resolver = module_graph(tree, source.module_name, source.relative, facts.calls)
        reached = _orm_target(target, functions, resolver)
        if reached is None:
            continue
        what, reach = reached
        if reach is not None and any(f.closes == "finally" for f in reach.path):
            continue  # closed on the pool's thread before it returns
        yield Hit(
            call.lineno,
            call.col_offset + 1,
            f"{how} runs {what} on a thread of a pool: that thread opens its own connection and "
            "nothing closes it; it is held while the thread lives and lost when the thread "
            "ends (with a pool, one slot per thread per run)",
        )


def _handed(call: ast.Call, pools: set[str], processes: bool) -> tuple[str, ast.expr] | None:
    """How the call hands a function to a thread pool, and the function; else None."""
    name = dotted(call.func)
    attr = last_name(call.func)
    if name in {"asyncio.to_thread", "to_thread"} and call.args:
        return "asyncio.to_thread", call.args[0]
    if attr == "run_in_executor" and len(call.args) > 1 and not processes:
        return "run_in_executor", call.args[1]
    pooled = isinstance(call.func, ast.Attribute) and dotted(call.func.value) in pools
    if attr in {"submit", "map"} and call.args and pooled:
        return f"{POOL}.{attr}", call.args[0]
    return None


def _thread_pools(tree: ast.Module) -> set[str]:
    """Names bound to a ``ThreadPoolExecutor(...)``: ``with ThreadPoolExecutor() as pool``,
    ``pool = ThreadPoolExecutor(...)``, ``self.pool = ...``."""
    found: set[str] = set()
    for node in walk(tree):
        if isinstance(node, ast.withitem) and _makes_pool(node.context_expr):
            if node.optional_vars is not None:
                found.add(dotted(node.optional_vars))
        elif isinstance(node, ast.Assign) and _makes_pool(node.value):
            found |= {dotted(t) for t in node.targets}
    found.discard("")
    return found


def _makes_pool(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and last_name(node.func) == POOL
