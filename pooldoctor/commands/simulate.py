"""``pooldoctor simulate``: every subject on a real Celery worker, judged per worker process.

Same preflight as ``check`` (settings, database, wrappers fail fast), then one worker fleet per
subject, ``jobs`` at a time. When a fleet shows an inherited pool or crossed replies, the fix is
run in the same simulation (the subject again, with the inherited pool discarded in
``worker_process_init``) and the report says whether it measured clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from pooldoctor.commands import check
from pooldoctor.core import project
from pooldoctor.core.findings.fleet import DISCARD_POOL_FIX, fleet_findings
from pooldoctor.core.model import Fix, FleetResult, SimulateReport, Verdict
from pooldoctor.core.probes import get_mode
from pooldoctor.core.subjects import Subject, parse_wrapper, select_modes
from pooldoctor.core.verdict import worst
from pooldoctor.core.verdict.fleet import judge_fleet
from pooldoctor.errors import PooldoctorError, UsageError
from pooldoctor.hosts import worker_host
from pooldoctor.hosts.celery.fleet import FleetOptions, FleetRecords, kill_all, run_fleet

POOLS = ("prefork", "threads", "solo", "gevent")


@dataclasses.dataclass(frozen=True)
class SimulateOptions:
    check: check.CheckOptions
    fleet: FleetOptions


def run_simulate(options: SimulateOptions,
                 progress: Callable[[Subject], None] | None = None) -> SimulateReport:  # fmt: skip
    started = time.monotonic()
    fleet = options.fleet
    if fleet.pool == "gevent" and importlib.util.find_spec("gevent") is None:
        raise UsageError("--pool gevent needs gevent, which is not installed",
                         "pip install gevent, or choose --pool prefork|threads|solo")  # fmt: skip
    host = worker_host("celery")
    host.check_broker(fleet.broker)
    opts = options.check
    subjects = [*select_modes(list(opts.modes) if opts.modes is not None else None)]
    subjects += [parse_wrapper(w) for w in opts.wrappers]
    with check.database_override(opts.database) as (override, source):
        spec = project.ProjectSpec(
            settings=opts.settings,
            alias=opts.alias,
            pythonpath=opts.pythonpath,
            cwd=opts.cwd,
            database=override,
        )
        run_id = uuid.uuid4().hex[:8]
        database = check.preflight(
            spec, source, run_id, [s for s in subjects if s.kind == "wrapper"]
        )
        if fleet.app:
            host.load_app(fleet.app)  # a worker that cannot would only die

        def one(index: int, subject: Subject, options: FleetOptions) -> FleetRecords:
            records = run_fleet(spec, subject, options, run_id, index)
            if progress:
                progress(subject)
            return records

        with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool, _killing_on_interrupt():
            raw = list(pool.map(lambda a: one(*a), [(i, s, fleet) for i, s in enumerate(subjects)]))
            _started(raw)
            results = [_judge(r) for r in raw]
            unsafe = [
                r
                for r in results
                if r.verdict == "unsafe" or any(w.inherited_pool for w in r.workers)
            ]
            proof_result = None
            if unsafe:
                # Prove the advice: the same subject again, with the inherited pool discarded.
                target = next(s for s in subjects if s.name == unsafe[0].subject)
                proof_run = run_fleet(spec, target, fleet, run_id, len(subjects), apply_fix=True)
                _started([proof_run])
                proof_result = _judge(proof_run)
    proof = None
    if proof_result is not None:
        proof = (f"with the inherited pool discarded, {proof_result.subject} measured "
                 f"{proof_result.verdict}")  # fmt: skip
        results.append(
            dataclasses.replace(
                proof_result, subject=f"{proof_result.subject} + discard-inherited-pool"
            )
        )
    ready = next((r.ready for r in raw if r.ready), {})
    wrappers = [r for r in results if r.kind == "wrapper"]
    overall = worst([r.verdict for r in wrappers])
    fix_subject = next((n for n in check.FIX_PREFERENCE for r in results
                        if r.subject == n and r.verdict == "clean"), None)  # fmt: skip
    fix = Fix("discard-inherited-pool", DISCARD_POOL_FIX) if proof_result is not None else None
    code = get_mode(fix_subject).fix if fix_subject else None
    if fix is None and code is not None:
        fix = Fix(fix_subject, code)
    return SimulateReport(
        verdict=overall,
        headline=_headline(wrappers, results),
        environment=check.environment(),
        database=database,
        celery={
            "version": ready.get("celery", "unknown"),
            "pool": fleet.pool,
            "concurrency": fleet.workers,
            "django_fixup": bool(ready.get("django_fixup")),
            "warm_parent": fleet.warm_parent,
            "broker": "embedded" if fleet.broker == "embedded" else project.mask_url(fleet.broker),
            "signal_handlers": ready.get("signal_handlers", []),
            "django_integration": ready.get("django_integration"),
        },
        results=tuple(results),
        findings=tuple(fleet_findings(results, proof, database.pool is not None)),
        fix=fix,
        seconds=round(time.monotonic() - started, 3),
    )


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
                       raw.leak_sites)  # fmt: skip


def _started(raw: list[FleetRecords]) -> None:
    """A worker that never became ready measured nothing: the simulation could not run."""
    for fleet in raw:
        if not fleet.ready:
            raise PooldoctorError(
                f"the Celery worker for {fleet.subject.name} did not start: {fleet.stop_detail}",
                "check --app, --broker and the project's Celery configuration",
            )


def _headline(wrappers: list[FleetResult], results: list[FleetResult]) -> str:
    if not wrappers:
        bad = [r.subject for r in results if r.verdict != "clean"]
        return (f"No project wrapper named: {len(results)} subjects simulated ({len(bad)} not "
                "clean). Name yours with --wrapper MODULE:ATTR.")  # fmt: skip
    top = max(wrappers, key=lambda r: r.verdict.rank)
    if top.verdict is Verdict.CLEAN:
        return f"Clean: {', '.join(r.subject for r in wrappers)} across every worker process."
    return f"{top.verdict.upper()}: {top.subject}: {top.summary}."
