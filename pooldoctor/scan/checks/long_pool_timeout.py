"""A pool timeout above 10 s, or none at all (psycopg_pool waits 30 s by default).

Django passes ``OPTIONS["pool"]`` to ``psycopg_pool.ConnectionPool`` (django/db/backends/
postgresql/base.py, ``DatabaseWrapper.pool``), whose ``timeout`` defaults to 30 s
(psycopg_pool/pool.py, ``ConnectionPool.__init__``). When connections leak and the pool runs dry,
every task then blocks that long in ``getconn()`` before ``PoolTimeout``: the worker looks hung, not
leaking. The same finding as ``pooldoctor check``'s audit PD103 (pooldoctor/findings.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.findings import LONG_POOL_TIMEOUT, PSYCOPG_POOL_DEFAULTS
from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import Setting, literal, read_databases
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import last_name

FIX = 'set OPTIONS["pool"]["timeout"] to a few seconds (e.g. 5) so exhaustion fails fast'


NEEDS = (("pool", "OPTIONS"),)


@register(__name__, "PD103", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "pool" not in source.text or source.tree is None:
        return
    default = PSYCOPG_POOL_DEFAULTS["timeout"]
    for pool in read_databases(source.tree).pools:
        options = pool_options(pool)
        if options is None:
            continue  # a name or an environment lookup: the keys are unknown
        node = options.get("timeout")
        if node is None:
            yield Hit(
                pool.line,
                pool.column,
                f"pool without a timeout: psycopg_pool's default is {default:g} s, so when the "
                f"pool is exhausted every task waits {default:g} s before failing, which looks "
                "like a hang, not a leak",
            )
            continue
        timeout = _seconds(literal(node))
        if timeout is not None and timeout > LONG_POOL_TIMEOUT:
            yield Hit(
                node.lineno,
                node.col_offset + 1,
                f"pool timeout {timeout:g} s: when the pool is exhausted every task waits "
                f"{timeout:g} s before failing, which looks like a hang, not a leak",
            )


def pool_options(pool: Setting) -> dict[str, ast.expr] | None:
    """The keys of ``OPTIONS["pool"]`` written out (``True`` has none), or None if unknown."""
    if pool.value is True:
        return {}
    node = pool.node
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            return None  # {**BASE_POOL, ...}
        return {
            key.value: value
            for key, value in zip(node.keys, node.values, strict=True)
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
        }
    if isinstance(node, ast.Call) and last_name(node.func) == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            return None  # dict(**BASE_POOL, ...)
        return {k.arg: k.value for k in node.keywords if k.arg is not None}
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None  # NOT_LITERAL, or nonsense psycopg_pool would reject anyway
    try:
        return float(value)
    except ValueError:
        return None
