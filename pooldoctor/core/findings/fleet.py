"""Findings of a simulation, with stable codes (PD4xx), each saying what to change.

Pure functions of the fleet results. Where a finding's fix can be run, :mod:`.run` runs it in the
same simulation and the finding names the result that proves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pooldoctor.core.model import Finding, FleetResult, Severity
from pooldoctor.core.verdict.fleet import CHURN_PER_TASK, Churn, churn

# The Celery release whose Django fix-up started calling close_pool() (celery/celery#9953; for
# prefork workers only since #10020): in DjangoWorkerFixup._close_database, which runs in
# task_prerun and task_postrun. Before it, the same handlers call close_if_unusable_or_obsolete(),
# which with a pool (CONN_MAX_AGE 0) hands the connection back to the pool and keeps the pool.
FIXUP_CLOSES_POOL = (5, 6)

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
    results: Sequence[FleetResult],
    proof: str | None,
    pooled: bool,
    *,
    celery_version: str = "",
    discard: str = "discard the inherited pool in worker_process_init",
    runner: str | None = None,
) -> list[Finding]:
    """``discard``: the fix for sockets shared across the fork, in the host's words; ``runner``:
    the task runner's name when it is not Celery."""
    proven = f" (measured here: {proof})" if proof else ""
    findings: list[Finding] = []
    for r in results:
        inherited = [w for w in r.workers if w.inherited_pool]
        if inherited:
            findings.append(Finding(
                "PD401", Severity.ERROR,
                f"{r.subject}: {len(inherited)} worker process(es) used the pool created in the "
                "parent before the fork",
                f"{discard}{proven}",
                r.subject,
            ))  # fmt: skip
        foreign = sum(w.inherited_connections for w in r.workers)
        if foreign:
            findings.append(Finding(
                "PD402", Severity.ERROR,
                f"{r.subject}: worker processes used {foreign} connection(s) opened by another "
                "process (one socket, several processes)",
                f"{discard}{proven}",
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
                f"{discard}{proven}",
                r.subject,
            ))  # fmt: skip
        churned = churn(r)
        if pooled and churned is not None and churned.per_task > CHURN_PER_TASK:
            findings.append(Finding(
                "PD404", Severity.WARNING,
                f"{r.subject}: {churned.per_task:g} new server connections per task past the "
                f"pool's warm-up ({churned.opened} over {churned.tasks} tasks in "
                f"{churned.processes} worker process(es)), each task paying a connect: "
                f"{churn_cause(celery_version, churned, runner)}",
                churn_fix(celery_version, churned, runner),
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


def churn_cause(celery_version: str, churned: Churn, runner: str | None = None) -> str:
    """Why the connections were opened, true for the installed Celery and for what was measured."""
    if runner is not None:
        what = ("the pool itself was replaced between tasks: look for code of the project's or "
                f"a {runner} hook that calls close_pool() around tasks") if churned.rebuilt else (
                "the same pool kept opening connections: it replaced connections it lost (see "
                "the leak verdict), that the server closed, or that max_lifetime or max_idle "
                "retired")  # fmt: skip
        return what
    version = _release(celery_version)
    if version is not None and version >= FIXUP_CLOSES_POOL:
        return (
            f"Celery {celery_version}'s Django fix-up calls close_pool() before and after every "
            "task of a prefork worker, so each task builds a new pool"
        )
    named = f"Celery {celery_version}'s" if celery_version else "Celery's"
    fixup = (
        f"{named} Django fix-up only hands the connection back to the pool around tasks "
        "(close_if_unusable_or_obsolete()) and never closes the pool, so this is not Celery"
    )
    if version is None:
        fixup = "the installed Celery's Django fix-up is not known here"
    if churned.rebuilt:
        return (
            f"the pool itself was replaced between tasks; {fixup}: look for a handler of the "
            "project's (task_prerun, task_postrun, a wrapper) that calls close_pool()"
        )
    return (
        f"the same pool kept opening connections; {fixup}: the pool replaced connections it "
        "lost (see the leak verdict), that the server closed, or that its max_lifetime or "
        "max_idle retired"
    )


def churn_fix(celery_version: str, churned: Churn, runner: str | None = None) -> str:
    version = _release(celery_version) if runner is None else None
    if version is not None and version >= FIXUP_CLOSES_POOL:
        return (
            "accept it (it is what keeps prefork children from sharing a pool), or run without "
            "Django's pool in workers and use PgBouncer"
        )
    if churned.rebuilt:
        where = "worker_process_init" if runner is None else "the worker process's start-up hook"
        return f"close the pool only in {where}, not around tasks"
    return "return every connection (a leak verdict says where one is lost), or raise max_lifetime"


def _release(version: str) -> tuple[int, int] | None:
    """``5.5.3`` -> (5, 5); None when it is not a version."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None
