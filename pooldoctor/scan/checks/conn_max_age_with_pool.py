"""A non-zero ``CONN_MAX_AGE`` on a database alias that also has ``OPTIONS["pool"]``.

Django refuses the combination when it first creates the pool: ``DatabaseWrapper.pool`` raises
``ImproperlyConfigured("Pooling doesn't support persistent connections.")`` whenever
``CONN_MAX_AGE != 0`` (django/db/backends/postgresql/base.py, Django 5.1+). ``None`` (unlimited)
counts as non-zero, and so does ``dj_database_url.config(conn_max_age=600)``. The settings import
cleanly; the first query of every process fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import AliasConfig, PoolState
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.values import Value

FIX = (
    "set CONN_MAX_AGE to 0 (or drop it, and conn_max_age= in dj_database_url) on every alias "
    "with a pool: the pool already keeps the connections open"
)


# The live settings are evaluated before the checks run; a file is handed to this check when it
# may hold one of their places.
NEEDS = (re.compile("pool", re.IGNORECASE), "CONN_MAX_AGE", "conn_max_age")


@register(__name__, "PD101", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    for alias in facts.settings.databases:
        age = alias.conn_max_age
        if alias.pool is not PoolState.ON or age is None or age.data == 0:
            continue
        if age.place is None or age.place.file != source.relative:
            continue
        pool = alias.pool_place or alias.place
        where = ""
        if pool is not None:
            where = f"line {pool.line}" if pool.file == source.relative else pool_where(pool)
        yield Hit(
            age.place.line,
            age.place.column,
            f"{describe(age)} with a pool ({where}{_of(alias)}): Django raises "
            'ImproperlyConfigured("Pooling doesn\'t support persistent connections.") '
            "when the pool is first used",
        )


def pool_where(place: object) -> str:
    return f"{getattr(place, 'file', '?')}:{getattr(place, 'line', '?')}"


def _of(alias: AliasConfig) -> str:
    return "" if alias.alias in ("default", "*") else f", alias {alias.alias!r}"


def describe(age: Value) -> str:
    if not age.known:
        return f"CONN_MAX_AGE may be non-zero ({age.because or 'scan cannot tell'})"
    if age.data is None:
        return "CONN_MAX_AGE=None (persistent connections without limit)"
    if age.from_environment:
        return f"CONN_MAX_AGE defaults to {age.data!r} (unless {age.from_environment} is set)"
    return f"CONN_MAX_AGE={age.data!r}"
