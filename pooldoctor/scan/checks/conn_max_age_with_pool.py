"""A non-zero ``CONN_MAX_AGE`` on a database alias that also has ``OPTIONS["pool"]``.

Django refuses the combination when it first creates the pool: ``DatabaseWrapper.pool`` raises
``ImproperlyConfigured("Pooling doesn't support persistent connections.")`` whenever
``CONN_MAX_AGE != 0`` (django/db/backends/postgresql/base.py, Django 5.1+). ``None`` (unlimited)
counts as non-zero, and so does ``dj_database_url.config(conn_max_age=600)``. The settings import
cleanly; the first query of every process fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import NOT_LITERAL, Setting, read_databases
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import last_name, parents

FIX = (
    "set CONN_MAX_AGE to 0 (or drop it, and conn_max_age= in dj_database_url) on every alias "
    "with a pool: the pool already keeps the connections open"
)


NEEDS = (("pool", "OPTIONS"),)


@register(__name__, "PD101", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "pool" not in source.text or source.tree is None:
        return
    settings = read_databases(source.tree)
    if not settings.pools or not settings.conn_max_age:
        return
    parent_of = parents(source.tree)
    pools = [(pool, alias_of(pool.node, parent_of)) for pool in settings.pools]
    for age in settings.conn_max_age:
        if age.value is not NOT_LITERAL and age.value == 0:
            continue
        alias = alias_of(age.node, parent_of)
        # Unknown aliases (None) may be the same alias; two known ones must match.
        pool = next((p for p, a in pools if alias is None or a is None or a == alias), None)
        if pool is not None:
            yield Hit(
                age.line,
                age.column,
                f"{_describe(age)} with a pool (line {pool.line}): Django raises "
                'ImproperlyConfigured("Pooling doesn\'t support persistent connections.") '
                "when the pool is first used",
            )


def _describe(age: Setting) -> str:
    if age.value is NOT_LITERAL:
        return "CONN_MAX_AGE is computed (from the environment?) and may be non-zero"
    if age.value is None:
        return "CONN_MAX_AGE=None (persistent connections without limit)"
    if isinstance(age.node, ast.Call):
        return f"CONN_MAX_AGE defaults to {age.value!r}"
    return f"CONN_MAX_AGE={age.value!r}"


def alias_of(node: ast.AST, parent_of: dict[ast.AST, ast.AST]) -> str | None:
    """The ``DATABASES`` key a setting belongs to: ``DATABASES = {"replica": {...}}``,
    ``DATABASES["replica"]["OPTIONS"] = ...``; None when the shape does not say."""
    child, current = node, parent_of.get(node)
    while current is not None:
        if isinstance(current, ast.Dict) and _assigns_databases(parent_of.get(current)):
            key = next(
                (k for k, v in zip(current.keys, current.values, strict=True) if v is child), None
            )
            return _string(key)
        if isinstance(current, ast.Assign):
            for target in current.targets:
                keys: list[str | None] = []
                while isinstance(target, ast.Subscript):
                    keys.append(_string(target.slice))
                    target = target.value
                if keys and last_name(target) == "DATABASES":
                    return keys[-1]
            return None
        if isinstance(current, ast.stmt):
            return None
        child, current = current, parent_of.get(current)
    return None


def _assigns_databases(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Assign) and any(last_name(t) == "DATABASES" for t in node.targets)


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
