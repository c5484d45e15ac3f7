"""Which syntax runs a database query: shared by the import-time checks and the project facts.

A query is a QuerySet method that evaluates (``Book.objects.count()``), a queryset iterated or
indexed, or a use of ``connection``/``connections`` that opens one. Code that runs is a module's
body, not its functions' or classes' bodies, nor an ``if __name__ == "__main__":`` block.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from pooldoctor.scan.syntax import dotted, last_name

MANAGERS = frozenset({"objects", "_default_manager", "_base_manager"})
# QuerySet/Manager methods that run a query (django/db/models/query.py); the rest are lazy.
EVALUATING = frozenset(
    {
        "get", "first", "last", "count", "exists", "contains", "create", "get_or_create",
        "update_or_create", "bulk_create", "bulk_update", "update", "delete", "aggregate",
        "in_bulk", "earliest", "latest", "iterator", "explain", "get_current",
    }
)  # fmt: skip
# Builtins that iterate their argument, and so evaluate a queryset passed to them.
ITERATING = frozenset(
    {"list", "tuple", "set", "frozenset", "dict", "len", "bool", "sorted", "sum", "min", "max"}
)
CONNECTION_USES = frozenset(
    {"cursor", "chunked_cursor", "ensure_connection", "connect", "introspection", "schema_editor"}
)


def executed(body: Iterable[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes of ``body`` that run when it runs: not the bodies of functions, lambdas and
    classes defined in it, nor an ``if __name__ == "__main__":`` block."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def ready_methods(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            last_name(base) == "AppConfig" for base in node.bases
        ):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "ready":
                    yield item


def query(node: ast.AST) -> ast.expr | None:
    """The expression in ``node`` that runs a query, if ``node`` is one that does."""
    if isinstance(node, ast.Call):
        names = _chain(node.func)
        if _manager_at(names) is not None and names[-1] in EVALUATING:
            return node
        if _uses_connection(names):
            return node
        if isinstance(node.func, ast.Name) and node.func.id in ITERATING and node.args:
            return node if _is_queryset(node.args[0]) else None
    if isinstance(node, ast.For | ast.comprehension) and _is_queryset(node.iter):
        return node.iter
    if (
        isinstance(node, ast.Subscript)
        and not isinstance(node.slice, ast.Slice)
        and _is_queryset(node.value)
    ):
        return node  # Book.objects.all()[0]
    return None


def _chain(node: ast.AST) -> list[str]:
    """Names along an attribute chain, base first, looking through calls and subscripts:
    ``connections["x"].cursor`` → ``["connections", "cursor"]``."""
    names: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    if isinstance(node, ast.Name):
        names.append(node.id)
    names.reverse()
    return names


def _manager_at(names: list[str]) -> int | None:
    """Where ``objects`` sits in a chain like ``Book.objects.filter``, if it does (not first)."""
    return next((i for i, name in enumerate(names) if i and name in MANAGERS), None)


def _is_queryset(node: ast.AST) -> bool:
    return isinstance(node, ast.Call | ast.Attribute) and _manager_at(_chain(node)) is not None


def _uses_connection(names: list[str]) -> bool:
    for i, name in enumerate(names):
        if name in {"connection", "connections"}:
            return any(later in CONNECTION_USES for later in names[i + 1 :])
    return False


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and dotted(test.left) == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def calls_django_setup(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Call) and dotted(node.func) == "django.setup"
        for node in executed(tree.body)
    )


def shorten(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 60 else text[:57] + "..."
