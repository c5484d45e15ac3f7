"""A pool timeout above 10 s, or none at all (psycopg_pool waits 30 s by default).

Django passes ``OPTIONS["pool"]`` to ``psycopg_pool.ConnectionPool`` (django/db/backends/
postgresql/base.py, ``DatabaseWrapper.pool``), whose ``timeout`` defaults to 30 s
(psycopg_pool/pool.py, ``ConnectionPool.__init__``). When connections leak and the pool runs dry,
every task then blocks that long in ``getconn()`` before ``PoolTimeout``: the worker looks hung, not
leaking. The same finding as ``pooldoctor check``'s audit PD103 (pooldoctor/findings.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pooldoctor.core.findings import LONG_POOL_TIMEOUT, PSYCOPG_POOL_DEFAULTS
from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import AliasConfig, PoolState
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.values import Dict, Value

FIX = 'set OPTIONS["pool"]["timeout"] to a few seconds (e.g. 5) so exhaustion fails fast'


# The live settings are evaluated before the checks run; a file is handed to this check when it
# may hold one of their places.
NEEDS = (re.compile("pool", re.IGNORECASE), "timeout")


@register(__name__, "PD103", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    default = PSYCOPG_POOL_DEFAULTS["timeout"]
    for alias in facts.settings.databases:
        options = pool_options(alias)
        if options is None:
            continue  # no pool, or keys scan cannot read
        timeout = options.get("timeout")
        if timeout is None:
            place = alias.pool_in(source.relative)
            if place is not None:
                yield Hit(
                    place.line,
                    place.column,
                    f"pool without a timeout: psycopg_pool's default is {default:g} s, so when "
                    f"the pool is exhausted every task waits {default:g} s before failing, which "
                    "looks like a hang, not a leak",
                )
            continue
        seconds = _seconds(timeout.data)
        place = timeout.place
        if seconds is None or seconds <= LONG_POOL_TIMEOUT or place is None:
            continue
        if place.file == source.relative:
            unless = (
                f" (unless {timeout.from_environment} is set)" if timeout.from_environment else ""
            )
            yield Hit(
                place.line,
                place.column,
                f"pool timeout {seconds:g} s{unless}: when the pool is exhausted every task "
                f"waits {seconds:g} s before failing, which looks like a hang, not a leak",
            )


def pool_options(alias: AliasConfig) -> Dict | None:
    """The pool's options as written (``True``: none), or None: no pool, or a dict scan cannot
    read whole (built from the environment, ``{**BASE_POOL, ...}``)."""
    if alias.pool is not PoolState.ON:
        return None
    options: Value | None = alias.pool_options
    if options is None:
        return Dict()  # "pool": True
    if not isinstance(options.data, Dict) or options.data.open:
        return None
    return options.data


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None  # unknown, or nonsense psycopg_pool would reject anyway
    try:
        return float(value)
    except ValueError:
        return None
