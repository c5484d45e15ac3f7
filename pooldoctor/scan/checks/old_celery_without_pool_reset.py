"""Celery older than 5.6 with a Django database pool and nothing that discards it in the child.

Before Celery 5.6 the Django fix-up never calls ``close_pool()``: in a prefork child,
``on_worker_process_init`` closes the inherited connections' file descriptors and calls
``conn.close()``, which hands a pooled connection back to the pool the parent created
(celery/fixups/django.py, DjangoWorkerFixup; fixed by celery/celery#9953, prefork-only since
#10020 and #10023). A pool opened in the parent before fork is therefore inherited by every child:
measured, the children share one socket and receive each other's query results (celery#9953
reports it as ``PoolTimeout: couldn't get a connection after 30.0 sec``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIXED_IN = (5, 6)
FIX = (
    "upgrade Celery to 5.6 or later, or connect a worker_process_init handler that calls "
    "close_pool() on every alias (for conn in connections.all(): conn.close_pool())"
)


# Reported on the line that pins Celery (the pins are matched ignoring case).
NEEDS = (re.compile("celery", re.IGNORECASE),)


@register(__name__, "PD313", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    where = facts.celery_version_at
    version = facts.celery_version
    if where is None or version is None or where.file != source.relative:
        return  # reported once, where the version is pinned
    if version >= FIXED_IN or not facts.pool_may_be_on or facts.discards_pool_in_child:
        return
    pool = f" ({facts.pools[0].file}:{facts.pools[0].line})" if facts.pools else ""
    yield Hit(
        where.line,
        1,
        f"{facts.pool_question}Celery {version[0]}.{version[1]} with a database pool{pool} and "
        "no worker_process_init handler calling close_pool(): before Celery 5.6 a pool opened "
        "in the parent before fork is inherited by every prefork child, which then share its "
        "sockets",
    )
