"""A pool without ``CONN_HEALTH_CHECKS`` and without its own ``check``.

Django creates the pool with ``check=ConnectionPool.check_connection if CONN_HEALTH_CHECKS else
None`` (django/db/backends/postgresql/base.py, ``DatabaseWrapper.pool``), and psycopg_pool checks
nothing on ``getconn()`` when ``check`` is None. After a server restart or a failover every idle
connection in the pool is dead, and the pool hands each one out to a query that then fails. The
same finding as ``pooldoctor check``'s audit PD105 (pooldoctor/findings.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.long_pool_timeout import pool_options
from pooldoctor.scan.databases import AliasConfig, PoolState
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = 'set "CONN_HEALTH_CHECKS": True (Django then checks each connection on checkout)'


# The live settings are evaluated before the checks run; a file is handed to this check when it
# may hold one of their places.
NEEDS = (re.compile("pool", re.IGNORECASE),)


@register(__name__, "PD105", Severity.INFO, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    for alias in facts.settings.databases:
        checks = alias.health_checks
        if checks is not None and (not checks.known or checks.data):
            continue  # on, or scan cannot tell
        options = pool_options(alias)
        question = ""
        if alias.pool is PoolState.UNKNOWN and _switched_by_environment(alias):
            question = f"if the pool is on ({alias.because or 'scan cannot tell'}), it runs "
        elif options is None or "check" in options:
            continue  # no pool, unreadable options, or the pool's own check callback
        place = alias.pool_in(source.relative)
        if place is not None:
            yield Hit(
                place.line,
                place.column,
                f"{question}pool without CONN_HEALTH_CHECKS: Django passes check=None, so "
                "after a server restart or failover the pool hands out dead connections",
            )


def _switched_by_environment(alias: AliasConfig) -> bool:
    """``"pool": env.bool("DB_POOL")``: on or off, and then with no options of its own (a name
    scan cannot read may hold a dict with its own ``check``)."""
    value = alias.pool_value
    return value is not None and value.from_environment is not None
