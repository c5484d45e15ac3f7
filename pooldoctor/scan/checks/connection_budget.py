"""More connections than the server has: the processes the deployment files start, times the pool.

Django keeps one ``psycopg_pool.ConnectionPool`` per alias per process
(``DatabaseWrapper._connection_pools``, django/db/backends/postgresql/base.py), which opens
``min_size`` connections as soon as it opens and grows to ``max_size`` under load
(psycopg_pool/pool.py, ``ConnectionPool``; ``pool: True`` is 4 and 4). Every Celery prefork
child, every ``celery multi`` node's children and every gunicorn worker is a process of its own,
and so is each supervisord ``numprocs`` copy and each compose replica. When they add up to more
than the server's ``max_connections`` less ``superuser_reserved_connections`` (PostgreSQL's
defaults: 100 and 3), the connections past it fail with ``FATAL: sorry, too many clients
already`` (SQLSTATE 53300) under load, not in testing. Without a pool every thread that runs ORM
code holds a connection of its own instead.

The counts are read from supervisord ``[program:x]`` (``command``, ``numprocs``), systemd
``ExecStart``, Procfile and heroku.yml, Dockerfile ``CMD``/``ENTRYPOINT`` and compose
``command`` with ``deploy.replicas``/``scale``: Celery's ``-c``/``--concurrency``/
``--autoscale`` and ``-P``, ``celery multi start N``, gunicorn's ``-w``/``--threads`` (or
``workers`` in a gunicorn config), uvicorn's, hypercorn's and granian's ``--workers``. A count
a file leaves out is taken as 1, so the total is a lower bound. The processes of one deployment
(a host's supervisord and systemd, Heroku's Procfile and heroku.yml, one compose file, one
Dockerfile) are added up; separate deployments are not. The budget is PostgreSQL's default
unless a ``postgres -c max_connections=N`` command or a postgresql.conf in the tree says
otherwise. ``pooldoctor check``'s PD102 is the run-time twin: it reads the server's real
``max_connections`` but does not know how many processes there are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from pooldoctor.core.findings import pool_settings
from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.long_pool_timeout import pool_options
from pooldoctor.scan.databases import AliasConfig
from pooldoctor.scan.deployment import POSTGRES_MAX_CONNECTIONS, POSTGRES_RESERVED, Workers
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = (
    'lower OPTIONS["pool"]["max_size"] (or the worker counts) so that processes x max_size '
    "stays under the server's max_connections less the reserved ones, raise max_connections, "
    "or put PgBouncer (transaction pooling) in front of the server"
)


@dataclasses.dataclass(frozen=True)
class Budget:
    usable: int
    text: str
    """``97 available connections (PostgreSQL's default max_connections 100 - 3 reserved)``."""


@register(__name__, "PD106", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not facts.workers:
        return
    budget = _budget(facts)
    if facts.has_pool:
        for alias in facts.settings.pools:
            place = alias.pool_in(source.relative)
            if place is None:
                continue
            sizes = _pool_sizes(alias)
            if sizes is None:
                continue  # sizes from the environment or a name: unknown
            for entries in _deployments(facts):
                message = _pooled(entries, *sizes, budget, facts)
                if message:
                    yield Hit(place.line, place.column, message)
        return
    for entries in _deployments(facts):
        first = entries[0]
        if first.file == source.relative:
            message = _unpooled(entries, budget)
            if message:
                yield Hit(first.line, 1, message)


def _pool_sizes(alias: AliasConfig) -> tuple[int, int] | None:
    """(min_size, max_size) of a pool, psycopg_pool's defaults filled in."""
    options = pool_options(alias)
    if options is None:
        return None
    sizes: dict[str, int] = {}
    for key in ("min_size", "max_size"):
        if key in options:
            value = options[key].data
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            sizes[key] = value
    settings = pool_settings(sizes or True)
    if settings is None:
        return None
    return int(settings["min_size"]), int(settings["max_size"])


def _deployments(facts: Facts) -> list[list[Workers]]:
    """The workers of each deployment, gunicorn's counts filled in from its config file."""
    groups: dict[str, list[Workers]] = {}
    for entry in facts.workers:
        groups.setdefault(entry.deployment, []).append(_with_config(entry, facts))
    return [groups[name] for name in sorted(groups)]


def _with_config(entry: Workers, facts: Facts) -> Workers:
    program = entry.program
    config = next((c for c in facts.gunicorn_configs if c.workers), None)
    if program.name != "gunicorn" or program.stated or config is None or config.workers is None:
        return entry
    threads = config.threads or program.threads
    arithmetic = f"gunicorn workers = {config.workers} ({config.file}:{config.line})"
    if threads > 1:
        arithmetic += f", threads = {threads}"
    filled = dataclasses.replace(
        program, processes=config.workers, threads=threads, arithmetic=arithmetic, stated=True
    )
    return dataclasses.replace(entry, program=filled)


def _budget(facts: Facts) -> Budget:
    """The server's usable connections: the largest max_connections a file sets (a lower
    bound, like the process counts), else PostgreSQL's default."""
    stated = max(facts.budgets, key=lambda b: b.max_connections, default=None)
    if stated is None:
        usable = POSTGRES_MAX_CONNECTIONS - POSTGRES_RESERVED
        default = f"PostgreSQL's default max_connections {POSTGRES_MAX_CONNECTIONS}"
        return Budget(
            usable, f"{usable} available connections ({default} - {POSTGRES_RESERVED} reserved)"
        )
    reserved = POSTGRES_RESERVED if stated.reserved is None else stated.reserved
    usable = stated.max_connections - reserved
    where = f"max_connections {stated.max_connections} at {stated.where}"
    return Budget(usable, f"{usable} available connections ({where} - {reserved} reserved)")


def _processes(entries: list[Workers]) -> tuple[int, str]:
    terms = []
    for entry in entries:
        copies = f" x {entry.copies_by}" if entry.copies > 1 else ""
        terms.append(f"{entry.program.arithmetic}{copies} = {entry.processes} ({entry.where})")
    return sum(e.processes for e in entries), " + ".join(terms)


def _pooled(
    entries: list[Workers], min_size: int, max_size: int, budget: Budget, facts: Facts
) -> str | None:
    processes, terms = _processes(entries)
    total = processes * max_size
    parents = _parents(entries, facts)
    extra = parents * min_size
    if total + extra <= budget.usable:
        return None
    lead = entries[0].deployment
    idle = processes * min_size
    at_start = f"; min_size {min_size} is opened at start, so {idle} are held even when idle"
    opened = ""
    if extra:
        query = facts.app_import_queries[0]
        opened = (
            f" + {parents} parent processes x min_size {min_size} = {extra} (the query at "
            f"{query.where} opens the pool in each parent before it forks)"
        )
    return (
        f"{lead}: {terms}: {processes} processes x pool max_size {max_size} = {total}"
        f"{opened} > {budget.text}{at_start}; past it connections fail with 'too many clients "
        "already'"
    )


def _parents(entries: list[Workers], facts: Facts) -> int:
    """Parents that open the pool: a query while the app loads runs in each Celery node's main
    process, and in gunicorn's master when it preloads the app."""
    if not facts.app_import_queries:
        return 0
    return sum(
        e.parents
        for e in entries
        if e.program.name.startswith("celery") or (e.program.name == "gunicorn" and facts.preloads)
    )


def _unpooled(entries: list[Workers], budget: Budget) -> str | None:
    processes, terms = _processes(entries)
    total = sum(e.processes * e.program.threads for e in entries)
    if total <= budget.usable:
        return None
    threads = "" if total == processes else f" ({total} with their threads)"
    return (
        f"{entries[0].deployment}: {terms}: {processes} processes{threads}, each thread with "
        f"a connection of its own (no pool) = {total} > {budget.text}; past it connections "
        "fail with 'too many clients already'"
    )
