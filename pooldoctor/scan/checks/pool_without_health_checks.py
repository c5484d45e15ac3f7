"""A pool without ``CONN_HEALTH_CHECKS`` and without its own ``check``.

Django creates the pool with ``check=ConnectionPool.check_connection if CONN_HEALTH_CHECKS else
None`` (django/db/backends/postgresql/base.py, ``DatabaseWrapper.pool``), and psycopg_pool checks
nothing on ``getconn()`` when ``check`` is None. After a server restart or a failover every idle
connection in the pool is dead, and the pool hands each one out to a query that then fails. The
same finding as ``pooldoctor check``'s audit PD105 (pooldoctor/findings.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.long_pool_timeout import pool_options
from pooldoctor.scan.databases import NOT_LITERAL, read_databases
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = 'set "CONN_HEALTH_CHECKS": True (Django then checks each connection on checkout)'


NEEDS = (("pool", "OPTIONS"),)


@register(__name__, "PD105", Severity.INFO, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "pool" not in source.text or source.tree is None:
        return
    settings = read_databases(source.tree)
    if any(s.value is NOT_LITERAL or s.value for s in settings.health_checks):
        return
    for pool in settings.pools:
        options = pool_options(pool)
        if options is None and not isinstance(pool.node, ast.Call):
            continue  # a name: the dict it holds may have its own check
        if options is not None and "check" in options:
            continue
        yield Hit(
            pool.line,
            pool.column,
            "pool without CONN_HEALTH_CHECKS: Django passes check=None, so after a server "
            "restart or failover the pool hands out dead connections",
        )
