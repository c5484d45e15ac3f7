"""Findings of a simulation, with stable codes (PD4xx), each saying what to change.

Pure functions of the fleet results. Where a finding's fix can be run, :mod:`.run` runs it in the
same simulation and the finding names the result that proves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pooldoctor.core.model import Finding, FleetResult, Severity
from pooldoctor.core.verdict.fleet import CHURN_PER_TASK

DISCARD_POOL_FIX = """\
from celery.signals import worker_process_init
from django.db import connections

@worker_process_init.connect
def discard_inherited_pool(**kwargs):
    # The pool (and its sockets) came from the parent: every child would share them.
    for alias in connections:
        try:
            connections[alias].close_pool()
        except (AttributeError, KeyError):  # not PostgreSQL, or no pool open
            pass
"""


def fleet_findings(
    results: Sequence[FleetResult], proof: str | None, pooled: bool
) -> list[Finding]:
    proven = f" (measured here: {proof})" if proof else ""
    findings: list[Finding] = []
    for r in results:
        inherited = [w for w in r.workers if w.inherited_pool]
        if inherited:
            findings.append(Finding(
                "PD401", Severity.ERROR,
                f"{r.subject}: {len(inherited)} worker process(es) used the pool created in the "
                "parent before the fork",
                f"discard the inherited pool in worker_process_init{proven}",
                r.subject,
            ))  # fmt: skip
        foreign = sum(w.inherited_connections for w in r.workers)
        if foreign:
            findings.append(Finding(
                "PD402", Severity.ERROR,
                f"{r.subject}: worker processes used {foreign} connection(s) opened by another "
                "process (one socket, several processes)",
                f"discard the inherited pool in worker_process_init{proven}",
                r.subject,
            ))  # fmt: skip
        if r.crossed_replies:
            backends = "; ".join(
                f"backend {b} answered pids {', '.join(map(str, p))}"
                for b, p in r.shared_backends.items()
            )
            findings.append(Finding(
                "PD403", Severity.ERROR,
                f"{r.subject}: {r.crossed_replies} of {r.tasks} tasks got another task's "
                f"query result back as their own ({backends or 'shared socket'})",
                f"discard the inherited pool in worker_process_init{proven}",
                r.subject,
            ))  # fmt: skip
        if pooled and r.connections_per_task > CHURN_PER_TASK:
            findings.append(Finding(
                "PD404", Severity.WARNING,
                f"{r.subject}: {r.connections_per_task:g} new server connections per task: the "
                "pool is rebuilt instead of reused (Celery's Django fix-up calls close_pool() "
                "around every prefork task from 5.6 on), each task paying a connect",
                "accept it (it is what keeps prefork children from sharing a pool), or run "
                "without Django's pool in workers and use PgBouncer",
                r.subject,
            ))  # fmt: skip
        for child in r.children_died:
            findings.append(Finding(
                "PD405", Severity.ERROR,
                f"{r.subject}: worker child {child['name']} (pid {child['pid']}) died: "
                f"{child['how']}; its task was lost",
                "look for the cause (OOM killer, a segfault in a C extension); use "
                "task_acks_late with task_reject_on_worker_lost for tasks that must not be lost",
                r.subject,
            ))  # fmt: skip
        unexpected = sum(r.errors.values())
        if r.tasks_lost or unexpected:
            kinds = ", ".join(f"{n} {k}" for k, n in r.errors.items())
            findings.append(Finding(
                "PD406", Severity.ERROR,
                f"{r.subject}: {r.tasks_lost} task(s) never came back, {unexpected} failed "
                f"unexpectedly{': ' + kinds if kinds else ''}",
                "see the per-worker evidence: the first error usually names the cause",
                r.subject,
            ))  # fmt: skip
    return findings
