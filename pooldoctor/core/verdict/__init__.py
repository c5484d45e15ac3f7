"""Pure rules: a subject's census in, its verdict and the numbers behind it out.

Nothing here knows which mode or wrapper produced the census; no Django is needed to test it.

- ``leak``: connections are given up while checked out (pool slots, or open server connections
  without a pool), or the connections held between tasks keep growing.
- ``pinned``: connections stay checked out between tasks, held by threads that outlive the tasks,
  without growth.
- ``clean``: nothing held between tasks, nothing lost.
- ``error``: the subject could not be measured to the end (it hung or crashed) and lost nothing;
  or the server ended pooldoctor's connections mid-run (terminated, shut down, restarted), after
  which nothing measured says anything about the subject, losses included.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pooldoctor.core.model import (
    Evidence,
    InspectReport,
    Report,
    SimulateReport,
    StopReason,
    SubjectResult,
    SubjectRun,
    TaskCensus,
    Verdict,
)


def judge(run: SubjectRun, task_threads: int = 1) -> SubjectResult:
    """``task_threads``: how many threads of the process run tasks at once (a threads pool's
    concurrency): each may keep one connection, so held connections growing up to that many,
    one per thread, are those threads starting, not a leak."""
    census = run.census
    if run.stop is StopReason.SKIPPED:
        return subject_result(run, Verdict.SKIPPED, f"skipped: {run.stop_detail}")
    if not census:
        return subject_result(run, Verdict.ERROR, f"could not run: {run.stop_detail}")
    ended = server_ended(run)
    if ended:
        # Before any loss or hold is judged: a connection the server ended cannot be given back,
        # so no leak site is named either (the census stays, as evidence).
        met = tuple(symptoms_of(run))
        return subject_result(replace(run, leak_sites=()), Verdict.ERROR, ended, symptoms=met)

    last = census[-1]
    between = completed(run)
    tasks = max(1, len(between))
    symptoms = symptoms_of(run)
    held_growth = between[-1].held - between[0].held if between else 0
    if held_growth > 0 and one_per_task_thread(between[-1], task_threads):
        held_growth = 0
    lost_done = between[-1].lost if between else last.lost
    lost_per_task = round(lost_done / tasks, 2)
    exhaustion = tasks_until_exhaustion(run)
    slots = "pool slot" if run.pooled else "server connection"

    if last.lost > 0 or held_growth > 0:
        parts = []
        if last.lost:
            parts.append(f"lost {_plural(lost_done, slots)} in {_plural(tasks, 'task')}")
        if held_growth > 0:
            parts.append(f"held connections grew from {between[0].held} to {between[-1].held}")
        if run.stop is StopReason.EXHAUSTED:
            parts.append(f"the pool was exhausted at task {len(census)}")
        elif exhaustion is not None:
            parts.append(f"the pool is exhausted after {exhaustion} tasks")
        verdict, summary = Verdict.LEAK, "; ".join(parts)
    elif run.stop in (StopReason.HUNG, StopReason.CRASHED, StopReason.EXHAUSTED):
        # Exhausted without a loss: connections held by live threads starved a task.
        verdict, summary = Verdict.ERROR, f"{run.stop.value}: {run.stop_detail}"
    elif unawaited(run):
        verdict, summary = Verdict.ERROR, unawaited(run) or ""
    elif not any(c.ok or c.expected_error for c in between):
        # The probe never got to run its own code (or the project's task failed every time):
        # nothing about the ORM's normal path was measured.
        verdict = Verdict.ERROR
        first = symptoms[0] if symptoms else "every task failed"
        summary = (
            f"no run of the task succeeded: {first}"
            if run.kind == "task"
            else f"no task ran the probe: {first}"
        )
    elif made_no_query(run):
        verdict, summary = Verdict.ERROR, made_no_query(run) or ""
    elif last.held > 0:
        holders = sorted({f"{c.thread} ({c.thread_role})" for c in last.connections if c.held})
        stays = "stays" if last.held == 1 else "stay"
        summary = (
            f"{_plural(last.held, 'connection')} {stays} checked out between tasks, "
            f"held by {', '.join(holders)}"
        )
        verdict = Verdict.PINNED
    else:
        verdict, summary = Verdict.CLEAN, "nothing held between tasks, nothing lost"
    return subject_result(
        run,
        verdict,
        summary,
        lost_slots=last.lost,
        lost_per_task=lost_per_task,
        held_connections=last.held,
        tasks_until_exhaustion=exhaustion,
        symptoms=tuple(symptoms),
    )


def one_per_task_thread(census: TaskCensus, task_threads: int) -> bool:
    """Whether the connections held are at most one per task thread, each by its own thread."""
    holders = [c.thread for c in census.connections if c.held]
    return task_threads > 1 and census.held <= task_threads and len(set(holders)) == census.held


# SQLSTATEs of a session the server (or the network) ended: class 08, connection exception, and
# admin_shutdown (pg_terminate_backend, a fast shutdown), crash_shutdown, cannot_connect_now.
CONNECTION_ENDED = ("57P01", "57P02", "57P03")


def connection_ended(sqlstate: str | None) -> bool:
    """Whether a SQLSTATE says the session is gone (whatever language the server speaks)."""
    return bool(sqlstate) and (str(sqlstate).startswith("08") or sqlstate in CONNECTION_ENDED)


def server_ended(run: SubjectRun) -> str | None:
    """Why nothing can be concluded when the server ended pooldoctor's connections mid-run: the
    subject process stopped on it (``disconnected``, the detail says where), or a task failed with
    a SQLSTATE that says so. None otherwise."""
    if run.stop is StopReason.DISCONNECTED:
        how = run.stop_detail or "connection lost"
    else:
        task = next((c for c in run.census if connection_ended(c.sqlstate)), None)
        if task is None:
            return None
        message = (task.error or "").partition(": ")[2] or task.error or ""
        how = f"{task.sqlstate} {' '.join(message.split())}, in task {task.index + 1}"
    return f"the server ended pooldoctor's connections mid-run ({how}): nothing can be concluded"


def unawaited(run: SubjectRun) -> str | None:
    """The task returned a coroutine nobody awaited: its code never ran (the reason, or None)."""
    return unawaited_reason(c.error for c in run.census)


def unawaited_reason(errors: Iterable[str | None]) -> str | None:
    """The reason recorded for a coroutine nobody awaited (a task's error, as recorded), or None."""
    error = next((e for e in errors if e and e.startswith(_UNAWAITED)), None)
    return None if error is None else error.removeprefix(_UNAWAITED)


def made_no_query(run: SubjectRun) -> str | None:
    """Why the subject's task code cannot have run, or None: a clean verdict on code that did
    not run would be about nothing. The probe always queries and fails on schedule; a project
    task is asked to run its code against the database."""
    if run.checkouts or any(c.expected_error for c in run.census):
        return None
    tasks = _plural(len(run.census), "task")
    if run.kind == "task":
        return (f"the task made no query on this alias in {tasks}: nothing was measured (check "
                "--args/--kwargs, and --alias)")  # fmt: skip
    if run.kind == "wrapper":
        return (f"the wrapper never ran the task: in {tasks} it made no query and none of the "
                "failures the task raises on schedule came back (does it call the function, and "
                "await what it returns?)")  # fmt: skip
    return None


_UNAWAITED = "NeverAwaited: "


def completed(run: SubjectRun | SubjectResult) -> tuple[TaskCensus, ...]:
    """The censuses taken between tasks: a run stopped mid-task (exhausted, hung) ends with a
    census of the task in progress, which says nothing about what stays held between tasks."""
    if run.stop in (StopReason.EXHAUSTED, StopReason.HUNG):
        return run.census[:-1]
    return run.census


def tasks_until_exhaustion(run: SubjectRun) -> int | None:
    """How many tasks a fresh process runs before no pool slot is left.

    Measured when the run reached exhaustion; otherwise extrapolated from the completed tasks:
    slots lost per task plus the growth of held connections per task. None without a pool or
    without a loss.
    """
    census = run.census
    pool = census[-1].pool if census else None
    if pool is None:
        return None
    if run.stop is StopReason.EXHAUSTED:
        return census[-1].index
    between = completed(run)
    if not between:
        return None
    end = between[-1]
    growth = (end.held - between[0].held) / (len(between) - 1) if len(between) > 1 else 0.0
    per_task = end.lost / len(between) + max(0.0, growth)
    if per_task <= 0:
        return None
    free = pool.max_size - end.lost - end.held
    return len(between) + max(0, math.floor(free / per_task))


def symptoms_of(run: SubjectRun) -> list[str]:
    """What tasks suffered that the probe did not cause on purpose, worst first."""
    # The stop detail already tells about a task stopped mid-way.
    ended = completed(run)
    errors = Counter(c.error for c in ended if c.error and not c.expected_error)
    symptoms = [f"{_plural(n, 'task')} failed with {error}" for error, n in errors.most_common()]
    poisoned = poisoned_since(ended)
    if poisoned is not None:
        symptoms.append(
            f"a held connection stayed idle in transaction from task {poisoned + 1} on: "
            "later tasks ran inside a stale transaction (poisoned connection)"
        )
    return symptoms


def poisoned_since(census: tuple[TaskCensus, ...]) -> int | None:
    """The first task after which a held connection sat in a transaction between tasks, if it
    stayed so to the end."""
    if not census or not _has_open_transaction(census[-1]):
        return None
    since = len(census) - 1
    while since > 0 and _has_open_transaction(census[since - 1]):
        since -= 1
    return census[since].index


def _has_open_transaction(task: TaskCensus) -> bool:
    return any(c.held and c.transaction in ("intrans", "inerror") for c in task.connections)


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: v.rank, default=Verdict.CLEAN)


def project_verdict(own: Sequence[Verdict], hazards: Sequence[Verdict] = ()) -> Verdict:
    """The project's verdict: the worst of its own subjects (wrappers, tasks) and of the hazards
    that are the project's whatever the subject (simulate: its Celery app's worker processes
    crossing replies). With nothing of the project's own measured it is ``unmeasured``, never
    ``clean``."""
    measured = [v for v in (*own, *hazards) if v is not Verdict.SKIPPED]
    return worst(measured) if measured else Verdict.UNMEASURED


# --fail-on: the least verdict that fails; an error fails every choice but "never".
FAIL_ON = {"unmeasured": Verdict.UNMEASURED, "pinned": Verdict.PINNED, "leak": Verdict.LEAK}
FAIL_ON_CHOICES = (*FAIL_ON, "never")


def fails(verdict: Verdict, fail_on: str) -> bool:
    """Whether a verdict reaches ``--fail-on`` (an error is never a pass)."""
    if fail_on == "never":
        return False
    return verdict is Verdict.ERROR or verdict.rank >= FAIL_ON[fail_on].rank


def report_fails(report: Report | SimulateReport | InspectReport, fail_on: str) -> bool:
    """Whether the command that built ``report`` exits 1. check and simulate: the project's
    verdict reaches ``--fail-on`` (built-in modes gate only through the project's hazards, such
    as its worker processes crossing replies); inspect: a node does (a node that could not be
    inspected is an error), or no node answered."""
    if isinstance(report, InspectReport):
        if not report.nodes:
            return fail_on != "never"
        return any(fails(n.verdict, fail_on) for n in report.nodes)
    return fails(report.verdict, fail_on)


def subject_result(
    run: SubjectRun,
    verdict: Verdict,
    summary: str,
    *,
    lost_slots: int = 0,
    lost_per_task: float = 0.0,
    held_connections: int = 0,
    tasks_until_exhaustion: int | None = None,
    symptoms: tuple[str, ...] = (),
) -> SubjectResult:
    """The judged subject: the run's own facts, its census as evidence, and the judgement."""
    return SubjectResult(
        subject=run.subject,
        kind=run.kind,
        description=run.description,
        verdict=verdict,
        summary=summary,
        lost_slots=lost_slots,
        lost_per_task=lost_per_task,
        held_connections=held_connections,
        tasks_until_exhaustion=tasks_until_exhaustion,
        symptoms=symptoms,
        stop=run.stop,
        stop_detail=run.stop_detail,
        tasks_planned=run.tasks_planned,
        evidence=Evidence(pooled=run.pooled, celery_task=run.celery_task, census=run.census),
        seconds=run.seconds,
        leak_sites=run.leak_sites,
        checkouts=run.checkouts,
        returns=run.returns,
        timeline=run.timeline,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
