"""The census as Prometheus metrics: the one place that turns a worker process's numbers into
metric families, for the live exporter (:mod:`pooldoctor.hosts.celery.metrics`) and for
``pooldoctor inspect --format openmetrics``.

Every series carries ``node``, ``pid`` and ``alias``: one worker process's view of one database
alias. Counters count since the process started (a prefork child that is replaced is a new
``pid``, so a new series), gauges are the state at the process's last snapshot. Lost connections
are split by leak site: the ``sites`` most frequent sites of each process by ``file:line`` of the
project's code, the rest folded into ``other``; ``unknown`` when no project frame was on the stack
or the worker runs without tracking. So a process never has more than ``sites + 2`` such series.

prometheus-client is an optional extra (``pooldoctor[metrics]``), imported only when a family is
built.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pooldoctor.core.model import InspectReport, LeakKind, ProcessResult

if TYPE_CHECKING:
    from prometheus_client import Metric

SITES = 5
"""Leak sites per process named in the ``site`` label; the rest are ``other``."""
OTHER = "other"
UNKNOWN = "unknown"
LABELS = ("node", "pid", "alias")


class Kind(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"


@dataclasses.dataclass(frozen=True)
class Spec:
    """One metric family: its name (a counter's without ``_total``), kind, help text and the
    labels it has besides :data:`LABELS`."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    @property
    def sample(self) -> str:
        """The name its samples have in a scrape (and in PromQL)."""
        return f"{self.name}_total" if self.kind is Kind.COUNTER else self.name


TASKS = Spec(
    "pooldoctor_tasks", Kind.COUNTER,
    "Tasks the process ran, by outcome (failed: ended in FAILURE; ok: any other end).",
    ("outcome",),
)  # fmt: skip
CHECKOUTS = Spec(
    "pooldoctor_checkouts", Kind.COUNTER,
    "Connections checked out of the alias's pool (without a pool: connections put to use).",
)  # fmt: skip
RETURNS = Spec(
    "pooldoctor_returns", Kind.COUNTER,
    "Checkouts given back to the pool (without a pool: connections closed).",
)  # fmt: skip
LOST = Spec(
    "pooldoctor_lost_connections", Kind.COUNTER,
    "Connections given up while checked out: pool slots lost until the process ends. site: "
    "where they were checked out (file:line of the project's code; 'other' past the most "
    "frequent few; 'unknown' without a project frame or without tracking).",
    ("site",),
)  # fmt: skip
OPENED = Spec(
    "pooldoctor_connections_opened", Kind.COUNTER,
    "Server connections the process opened (many per task: the pool is rebuilt, not reused).",
)  # fmt: skip
HELD = Spec(
    "pooldoctor_held_connections", Kind.GAUGE,
    "Connections checked out between tasks by threads that are still alive.",
)  # fmt: skip
INHERITED = Spec(
    "pooldoctor_inherited_connections", Kind.GAUGE,
    "Connections found in the pool inherited from the parent process at fork: their sockets "
    "are shared with every sibling.",
)  # fmt: skip
POOL_SIZE = Spec(
    "pooldoctor_pool_size", Kind.GAUGE,
    "Connections the pool counts: idle, handed out or being opened (psycopg_pool's pool_size).",
)  # fmt: skip
POOL_AVAILABLE = Spec(
    "pooldoctor_pool_available", Kind.GAUGE, "Idle connections in the pool."
)  # fmt: skip
POOL_WAITING = Spec(
    "pooldoctor_pool_waiting", Kind.GAUGE, "Clients waiting for a connection from the pool."
)  # fmt: skip
POOL_MAX_SIZE = Spec(
    "pooldoctor_pool_max_size", Kind.GAUGE, "The pool's max_size: its slots."
)  # fmt: skip
AGE = Spec(
    "pooldoctor_snapshot_age_seconds", Kind.GAUGE,
    "Seconds since the process wrote the snapshot these numbers come from (after its last task).",
)  # fmt: skip

SPECS = (TASKS, CHECKOUTS, RETURNS, LOST, OPENED, HELD, INHERITED, POOL_SIZE, POOL_AVAILABLE,
         POOL_WAITING, POOL_MAX_SIZE, AGE)  # fmt: skip


def sample_names() -> frozenset[str]:
    """Every sample name the exporter can emit (what a dashboard's queries may use)."""
    return frozenset(spec.sample for spec in SPECS)


def lost_by_site(process: ProcessResult, sites: int = SITES) -> dict[str, int]:
    """``site label -> lost connections``, summing to the process's ``lost_slots``: the ``sites``
    most frequent sites by ``file:line``, the rest ``other``, what no site explains
    ``unknown``."""
    out: dict[str, int] = {}
    left = process.lost_slots
    named = 0
    for site in process.leak_sites:  # most frequent first
        if site.kind is not LeakKind.LOST or left <= 0:
            continue
        count = min(site.count, left)
        left -= count
        if site.file is None:
            label = UNKNOWN
        elif named < sites or f"{site.file}:{site.line}" in out:
            label = f"{site.file}:{site.line}"
            named += label not in out
        else:
            label = OTHER
        out[label] = out.get(label, 0) + count
    if left > 0:
        out[UNKNOWN] = out.get(UNKNOWN, 0) + left
    return out


def families(
    processes: Iterable[ProcessResult], *, node: str, alias: str, sites: int = SITES
) -> list[Metric]:
    """The metric families of one node's worker processes (every family, samples or not: an idle
    node still says what it exports)."""
    return _families(((p, node, alias) for p in processes), sites)


def render(report: InspectReport, *, sites: int = SITES) -> str:
    """The fleet of ``pooldoctor inspect`` in the OpenMetrics text format (ends with ``# EOF``).
    Nodes that did not answer have no processes, so no series."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest

    rows = [(p, n.node, n.alias or "") for n in report.nodes for p in n.processes]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(_families(rows, sites)))
    return generate_latest(registry).decode()


class _Fixed:
    """A collector of families built beforehand."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def _families(rows: Iterable[tuple[ProcessResult, str, str]], sites: int) -> list[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    built: dict[Spec, Metric] = {}
    for spec in SPECS:
        cls = CounterMetricFamily if spec.kind is Kind.COUNTER else GaugeMetricFamily
        built[spec] = cls(spec.name, spec.help, labels=[*LABELS, *spec.labels])

    def add(spec: Spec, labels: list[str], value: float, *extra: str) -> None:
        built[spec].add_metric([*labels, *extra], value)  # type: ignore[attr-defined]

    for p, node, alias in rows:
        labels = [node, str(p.pid), alias]
        add(TASKS, labels, p.tasks - p.failed_tasks, "ok")
        add(TASKS, labels, p.failed_tasks, "failed")
        add(CHECKOUTS, labels, p.checkouts)
        add(RETURNS, labels, p.returns)
        lost = lost_by_site(p, sites)
        lost.setdefault(UNKNOWN, 0)  # one series every process always has: a clean one says 0
        for site in sorted(lost):
            add(LOST, labels, lost[site], site)
        add(OPENED, labels, p.connections_opened)
        add(HELD, labels, p.held_connections)
        add(INHERITED, labels, p.adopted_connections)
        if p.pool is not None:
            add(POOL_SIZE, labels, p.pool.size)
            add(POOL_AVAILABLE, labels, p.pool.available)
            add(POOL_WAITING, labels, p.pool.waiting)
            add(POOL_MAX_SIZE, labels, p.pool.max_size)
        if p.updated_seconds_ago is not None:
            add(AGE, labels, p.updated_seconds_ago)
    return list(built.values())
