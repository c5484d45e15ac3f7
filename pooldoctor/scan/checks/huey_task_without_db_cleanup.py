"""A Huey task that uses the ORM through a plain ``task()``/``periodic_task()``, not ``db_task()``.

``huey.contrib.djhuey``'s ``task`` and ``periodic_task`` are the ``Huey`` instance's own
decorators, which know nothing of Django; only ``db_task``/``db_periodic_task`` wrap the
function in ``close_db``, which calls ``close_old_connections()`` before and after it
(huey/contrib/djhuey/__init__.py). A plain task's connection is never closed: the consumer's
worker keeps it (with a pool, a slot) for its whole life whatever ``CONN_MAX_AGE`` says, and a
connection left broken by a failed task or a server restart is handed to every later task that
worker runs.

The function is followed through the project's calls (four deep) to the ORM. Decorators
counted: ``task``/``periodic_task`` imported from ``huey.contrib.djhuey``, and the methods of a
Huey instance (``huey.task()``, ``HUEY.periodic_task()``, ``djhuey.task()``, an instance made in
the module: ``RedisHuey(...)``, ``SqliteHuey(...)``...). Not flagged: a task wrapped in
djhuey's ``close_db``, one that (or whose path to the ORM) closes its connections in a
``finally``, and a module with a ``pre_execute``/``post_execute``/``signal`` hook that closes
them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.calls import Resolver, module_graph
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import FunctionNode, calls, dotted, is_cleanup_call, last_name

FIX = (
    "decorate it with huey.contrib.djhuey's db_task() (db_periodic_task() for a periodic "
    "task), which calls close_old_connections() before and after it"
)
DJHUEY = "huey.contrib.djhuey"
DECORATORS = frozenset({"task", "periodic_task"})
HOOKS = frozenset({"pre_execute", "post_execute", "signal"})
_CLASSES = frozenset(
    {"Huey", "RedisHuey", "RedisExpireHuey", "PriorityRedisHuey", "PriorityRedisExpireHuey",
     "SqliteHuey", "MemoryHuey", "FileHuey", "BlackHoleHuey"}
)  # fmt: skip


NEEDS = (("huey", "task"),)


@register(__name__, "PD319", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "huey" not in source.text or source.tree is None:
        return
    tree = source.tree
    plain, instances = _huey_names(tree)
    if not plain and not instances:
        return
    tasks = [f for f in tree.body if isinstance(f, ast.FunctionDef) and _task(f, plain, instances)]
    if not tasks or _hook_closes(tree):
        return
    resolver: Resolver = module_graph(tree, source.module_name, source.relative, facts.calls)
    for function in tasks:
        qualified = resolver.seen.get(function, ("", None, {}))[0]
        reach = resolver.graph.reaches_sync_orm([qualified]) if qualified else None
        if reach is None or any(f.closes == "finally" for f in reach.path):
            continue
        how = f"{reach.what} at {reach.where}"
        if len(reach.path) > 1:
            how += f", via {reach.via}"
        decorator = _task(function, plain, instances)
        yield Hit(
            function.lineno,
            function.col_offset + 1,
            f"Huey task {function.name!r} uses the ORM ({how}) but is a plain {decorator}(), "
            "not db_task(): nothing closes its connection, so the worker keeps it (with a pool, "
            "a slot) for its life, and a connection broken by a failed task or a server restart "
            "is handed to every later task on that worker",
        )


def _huey_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to djhuey's ``task``/``periodic_task``, and names of Huey instances (or of
    the djhuey module, whose ``task`` is its instance's)."""
    plain: set[str] = set()
    instances: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == DJHUEY:
            for alias in node.names:
                if alias.name in DECORATORS:
                    plain.add(alias.asname or alias.name)
                elif alias.name == "HUEY":
                    instances.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module == "huey.contrib":
            instances |= {a.asname or a.name for a in node.names if a.name == "djhuey"}
        elif isinstance(node, ast.Import):
            instances |= {a.asname for a in node.names if a.name == DJHUEY and a.asname}
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and last_name(node.value.func) in _CLASSES
        ):
            instances |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return plain, instances


def _task(function: FunctionNode, plain: set[str], instances: set[str]) -> str:
    """``task`` or ``periodic_task`` when ``function`` is a plain Huey task (no ``close_db``
    among its decorators), else empty."""
    found = ""
    for decorator in function.decorator_list:
        name = dotted(decorator)
        if last_name(decorator) == "close_db":
            return ""
        if not isinstance(decorator, ast.Call):
            continue
        base, _, attr = name.rpartition(".")
        if (not base and attr in plain) or (base in instances and attr in DECORATORS):
            found = attr if not base else f"{base}.{attr}"
    return found


def _hook_closes(tree: ast.Module) -> bool:
    """A ``@huey.pre_execute()``/``post_execute()``/``signal()`` hook in the module that closes
    connections (``close_old_connections()``, ``connections.close_all()``)."""
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        hook = any(last_name(d) in HOOKS for d in node.decorator_list)
        if hook and any(is_cleanup_call(c) for c in calls(node)):
            return True
    return False
