"""``pooldoctor simulate``: every subject on a real Celery worker, judged per worker process.

Same preflight as ``check`` (settings, database, wrappers fail fast), then one worker fleet per
subject, ``jobs`` at a time. When a fleet shows an inherited pool or crossed replies, the fix is
run in the same simulation (the subject again, with the inherited pool discarded in
``worker_process_init``) and the report says whether it measured clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pooldoctor.commands import check
from pooldoctor.core import findings, lifeline, project, verdict
from pooldoctor.core.findings.fleet import DISCARD_POOL_FIX, fleet_findings
from pooldoctor.core.model import PROJECT_KINDS, Fix, FleetResult, SimulateReport, Verdict
from pooldoctor.core.probes import clean_pattern
from pooldoctor.core.project_tasks import resolve_task
from pooldoctor.core.subjects import Subject
from pooldoctor.core.verdict.fleet import judge_fleet
from pooldoctor.errors import MissingExtraError, PooldoctorError, UsageError
from pooldoctor.hosts import runner_host, worker_host
from pooldoctor.hosts.base import RunnerHost
from pooldoctor.hosts.celery.fleet import import_celery, run_fleet
from pooldoctor.hosts.fleet import FleetOptions, FleetRecords, kill_all, run_runner_fleet

POOLS = ("prefork", "threads", "solo", "gevent")


@dataclasses.dataclass(frozen=True)
class SimulateOptions:
    check: check.CheckOptions
    fleet: FleetOptions


SimulateProgress = Callable[[str, int, int], None]
"""Told (subject, tasks done, tasks sent) as a subject's worker answers, from the run's threads."""


def run_simulate(options: SimulateOptions,
                 progress: SimulateProgress | None = None) -> SimulateReport:  # fmt: skip
    started = time.monotonic()
    lifeline.reap_stale()  # what killed runs left behind: their workers' directories, servers
    fleet = options.fleet
    runner = None if fleet.runner == "celery" else runner_for(fleet)
    if runner is None:
        if fleet.pool == "gevent" and importlib.util.find_spec("gevent") is None:
            raise UsageError(
                "--pool gevent needs gevent, which is not installed",
                "pip install gevent, or choose --pool prefork|threads|solo",
            )
        worker_host("celery").check_broker(fleet.broker)
    elif runner.uses_broker:
        runner.check_broker(fleet.broker)
    opts = options.check
    subjects = check.select_subjects(opts, worker=True)
    views = [s.name for s in subjects if s.web]
    if views:  # a view is reached by a request, not run by a task runner's worker
        raise UsageError(f"{', '.join(views)}: request modes are measured by check, not on "
                         "task workers", "pooldoctor check --modes NAME, or simulate "
                         "--server gunicorn|uvicorn|daphne for a real web server")  # fmt: skip
    with check.database_override(opts.database) as (override, source):
        queue_in_database = runner is not None and not runner.uses_broker
        if queue_in_database and source != "embedded" and not opts.allow_writes:
            raise UsageError(
                f"--runner {fleet.runner} keeps its queue in the project's database: "
                "simulate would write its rows there",
                "use --database embedded (pooldoctor migrates a throwaway server), or pass "
                "--allow-writes to let it write to this database",
            )
        spec = check.project_spec(opts, override, source)
        run_id = uuid.uuid4().hex[:8]
        database = check.preflight(
            spec, source, run_id, [s for s in subjects if s.kind == "wrapper"]
        )
        for path in opts.task_paths:
            subjects += resolve_task(path, opts.task_args, opts.task_kwargs, opts.wrappers)
        if (opts.task_paths or queue_in_database) and source == "embedded":
            check.migrate(spec.alias)
        if fleet.app and runner is None:
            worker_host("celery").load_app(fleet.app)  # a worker that cannot would only die

        def one(index: int, subject: Subject, apply_fix: bool = False) -> FleetRecords:
            label = f"{subject.name} + {proof_name}" if apply_fix else subject.name
            told = functools.partial(progress, label) if progress else None
            if runner is not None:
                return run_runner_fleet(runner, spec, subject, fleet, run_id, index,
                                        apply_fix=apply_fix, progress=told)  # fmt: skip
            return run_fleet(spec, subject, fleet, run_id, index, apply_fix=apply_fix,
                             progress=told)  # fmt: skip

        proof_name, fix_text = (PROOF, DISCARD_POOL_FIX) if runner is None else runner_fix(runner)
        if runner is None:
            import_celery()
        with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool, _killing_on_interrupt():
            raw = list(pool.map(lambda a: one(*a), enumerate(subjects)))
            _started(raw, runner)
            results = [_judge(r) for r in raw]
            # Prove the advice where the hazard showed: the project's own subjects, else every
            # subject that showed it, run again with the inherited pool discarded in each child.
            shown = [r for r in results if inherits(r)]
            targets = [r for r in shown if r.kind in PROJECT_KINDS] or shown
            by_name = {s.name: s for s in subjects}
            proof_raw = list(pool.map(
                lambda a: one(len(subjects) + a[0], by_name[a[1].subject], True),
                enumerate(targets),
            ))  # fmt: skip
            _started(proof_raw, runner)
    proofs = [(target, _judge(r)) for target, r in zip(targets, proof_raw, strict=True)]
    results += [dataclasses.replace(proof, subject=f"{proof.subject} + {proof_name}", kind="fix")
                for _, proof in proofs]  # fmt: skip
    ready = next((r.ready for r in raw if r.ready), {})
    own = [r for r in results if r.kind in PROJECT_KINDS]
    hazard = app_hazard(results)
    fix = _proof_fix(proofs, proof_name, fix_text) if proofs else _pattern_fix(results)
    proof = fix.detail if proofs and fix is not None else None
    who = "Celery app" if runner is None else f"{runner.title} workers"
    forks = runner is None or fleet.pool in runner.forking
    discard = ("discard the inherited pool in worker_process_init" if runner is None
               else f"{fix_text.splitlines()[0]}")  # fmt: skip
    return SimulateReport(
        verdict=verdict.project_verdict([r.verdict for r in own], [hazard] if hazard else []),
        headline=_headline(own, results, hazard, fix, who, forks),
        environment=check.environment(),
        database=database,
        celery={} if runner is not None else _celery_facts(fleet, ready),
        runner=None if runner is None else _runner_facts(runner, fleet, ready),
        results=tuple(results),
        findings=tuple(
            # The proof runs changed the project's code: what they show is in the fix.
            fleet_findings(
                [r for r in results if r.kind != "fix"],
                proof,
                database.pool is not None,
                celery_version=ready.get("celery", ""),
                discard=discard,
                runner=None if runner is None else runner.title,
            )
            + (findings.writes_refused(own, database.dsn) if spec.read_only else [])
            + findings.direct_connections(own)
        ),
        fix=fix,
        seconds=round(time.monotonic() - started, 3),
    )


def runner_for(fleet: FleetOptions) -> RunnerHost:
    """The task runner ``--runner`` names, installed, with a kind of worker it has."""
    try:
        runner = runner_host(fleet.runner)
    except LookupError as exc:
        raise UsageError(str(exc), "choose one of them with --runner NAME") from exc
    if not runner.installed():
        raise MissingExtraError(
            f"--runner {runner.runner_name} needs {runner.distribution}, which is not installed",
            f"pip install {runner.distribution}",
        )
    if fleet.pool not in runner.pools:
        raise UsageError(
            f"--pool {fleet.pool} is not a kind of {runner.title} worker",
            f"choose one of {', '.join(runner.pools)} for --runner {runner.runner_name}",
        )
    return runner


def runner_fix(runner: RunnerHost) -> tuple[str, str]:
    """The runner's own fix for an inherited pool: (name, what to change)."""
    return runner.fix or (PROOF, DISCARD_POOL_FIX)


def _celery_facts(fleet: FleetOptions, ready: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": ready.get("celery", "unknown"),
        "app": ready.get("app", "unknown"),
        "pool": fleet.pool,
        "concurrency": fleet.workers,
        "django_fixup": bool(ready.get("django_fixup")),
        "warm_parent": fleet.warm_parent,
        "broker": "embedded" if fleet.broker == "embedded" else project.mask_url(fleet.broker),
        "signal_handlers": ready.get("signal_handlers", []),
        "django_integration": ready.get("django_integration"),
    }


def _runner_facts(runner: RunnerHost, fleet: FleetOptions, ready: dict[str, Any]) -> dict[str, Any]:
    broker = "the project's database" if not runner.uses_broker else project.mask_url(fleet.broker)
    return {
        "name": runner.runner_name,
        "title": runner.title,
        "version": ready.get("version", runner.version()),
        "pool": fleet.pool,
        "forks": fleet.pool in runner.forking,
        "concurrency": ready.get("concurrency", fleet.workers),
        "warm_parent": fleet.warm_parent,
        "broker": broker,
        "command": ready.get("command", ""),
        "django_integration": ready.get("django_integration"),
    }


PROOF = "discard-inherited-pool"


def crosses(result: FleetResult) -> bool:
    """Replies crossed, or a connection another process opened was used: the app's processes
    share sockets."""
    return any(w.crossed_replies or w.inherited_connections for w in result.workers)


def inherits(result: FleetResult) -> bool:
    """The fork hazard showed: shared sockets, or a child used the pool its parent created."""
    return crosses(result) or any(w.inherited_pool for w in result.workers)


def app_hazard(results: list[FleetResult]) -> Verdict | None:
    """What the project's Celery app itself does across the fork, whatever the subject: unsafe
    when any subject's processes shared a socket, clean when tasks echoed and none did, None when
    no task's query came back at all (nothing measured)."""
    measured = [r for r in results if r.kind != "fix"]
    if any(crosses(r) for r in measured):
        return Verdict.UNSAFE
    return Verdict.CLEAN if any(r.echoes for r in measured) else None


def _proof_fix(proofs: list[tuple[FleetResult, FleetResult]], name: str = PROOF,
               text: str = DISCARD_POOL_FIX) -> Fix:  # fmt: skip
    """The discard-inherited-pool fix and what it measured on the subject where it did best
    (the project's own subjects come first); the other runs in the detail."""
    target, best = min(proofs, key=lambda p: (inherits(p[1]), p[1].verdict.rank))
    parts = []
    for subject, proof in proofs:
        after = (
            "still shared sockets"
            if crosses(proof)
            else "no reply crossed, no inherited connection used"
        )
        parts.append(f"{subject.subject} measured {proof.verdict} ({after})")
    return Fix(name, text, applied_to=target.subject, measured=best.verdict,
               detail="with the inherited pool discarded: " + "; ".join(parts))  # fmt: skip


def _pattern_fix(results: list[FleetResult]) -> Fix | None:
    """Without a fork hazard: the way of running async code that measured clean as a built-in
    mode (a pattern, not applied to the project's code)."""
    clean = [r.subject for r in results if r.kind == "mode" and r.verdict is Verdict.CLEAN]
    pattern = clean_pattern(clean)
    return Fix(pattern.name, pattern.fix) if pattern and pattern.fix else None


@contextlib.contextmanager
def _killing_on_interrupt() -> Iterator[None]:
    try:
        yield
    except BaseException:
        kill_all()  # the fleets' threads then see their workers gone and return at once
        raise


def _judge(raw: FleetRecords) -> FleetResult:
    return judge_fleet(raw.subject.name, raw.subject.kind, raw.sent, raw.records,
                       raw.children_died, raw.stop_detail, raw.seconds,
                       raw.leak_sites, raw.timelines)  # fmt: skip


def _started(raw: list[FleetRecords], runner: RunnerHost | None = None) -> None:
    """A worker that never became ready measured nothing: the simulation could not run."""
    for fleet in raw:
        if not fleet.ready:
            who = "Celery" if runner is None else runner.title
            tip = ("check --app, --broker and the project's Celery configuration" if runner is None
                   else f"check --broker and the project's {runner.title} settings; --debug "
                   "shows the worker's output")  # fmt: skip
            raise PooldoctorError(
                f"the {who} worker for {fleet.subject.name} did not start: {fleet.stop_detail}",
                tip,
            )


def _headline(own: list[FleetResult], results: list[FleetResult], hazard: Verdict | None,
              fix: Fix | None, who: str = "Celery app", forks: bool = True) -> str:  # fmt: skip
    """One sentence for the project: its app's fork behaviour first (it is the worst there is),
    then its own wrappers and tasks."""
    if hazard is Verdict.UNSAFE:
        shared = [r for r in results if r.kind != "fix" and crosses(r)]
        crossed = sum(r.crossed_replies for r in shared)
        foreign = sum(w.inherited_connections for r in shared for w in r.workers)
        proof = ""
        if fix is not None and fix.applied_to is not None:
            proof = (f" Discarding the inherited pool ({fix.subject}) measured "
                     f"{fix.measured} on {fix.applied_to}.")  # fmt: skip
        return (
            f"UNSAFE: the project's {who} share{'s' if who.endswith('app') else ''} database "
            "connections between worker "
            f"processes: {crossed} replies crossed, {foreign} connections used by a process "
            f"that did not open them ({_named(shared)}).{proof}"
        )
    if own:
        top = max(own, key=lambda r: r.verdict.rank)
        if top.verdict is Verdict.CLEAN:
            return f"Clean: {', '.join(r.subject for r in own)} across every worker process."
        return f"{top.verdict.upper()}: {top.subject}: {top.summary}."
    if hazard is Verdict.CLEAN:
        echoed = sum(r.echoes for r in results if r.kind != "fix")
        across = "across the fork" if forks else "(its workers do not fork)"
        return (
            f"Clean {across}: the project's {who} kept each worker process's "
            f"connections to itself ({echoed} tasks echoed their own reply). Name a wrapper "
            "(--wrapper) or a task (--task) for a verdict on the project's task code too."
        )
    return (
        "UNMEASURED: no task's query came back from the workers, so nothing of the project's "
        "was measured; see each subject's evidence."
    )


def _named(results: list[FleetResult], shown: int = 3) -> str:
    names = [r.subject for r in results]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
