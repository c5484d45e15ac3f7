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
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pooldoctor import check, project
from pooldoctor.errors import UsageError
from pooldoctor.model import DatabaseInfo, Finding
from pooldoctor.simulate.findings import DISCARD_POOL_FIX, fleet_findings
from pooldoctor.simulate.fleet import FleetOptions, FleetRecords, kill_all, run_fleet
from pooldoctor.simulate.judge import RANK, FleetResult, judge_fleet
from pooldoctor.subjects import Subject, parse_wrapper, select_modes

POOLS = ("prefork", "threads", "solo", "gevent")


@dataclasses.dataclass(frozen=True)
class SimulateOptions:
    check: check.CheckOptions
    fleet: FleetOptions


@dataclasses.dataclass(frozen=True)
class SimulateReport:
    verdict: str
    headline: str
    environment: Mapping[str, str]
    database: DatabaseInfo
    celery: Mapping[str, Any]
    results: tuple[FleetResult, ...]
    findings: tuple[Finding, ...]
    fix: str | None
    fix_subject: str | None
    seconds: float


def run_simulate(options: SimulateOptions,
                 progress: Callable[[Subject], None] | None = None) -> SimulateReport:  # fmt: skip
    started = time.monotonic()
    fleet = options.fleet
    if fleet.pool == "gevent" and importlib.util.find_spec("gevent") is None:
        raise UsageError("--pool gevent needs gevent, which is not installed",
                         "pip install gevent, or choose --pool prefork|threads|solo")  # fmt: skip
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
            _check_app(fleet.app)

        def one(index: int, subject: Subject, options: FleetOptions) -> FleetRecords:
            records = run_fleet(spec, subject, options, run_id, index)
            if progress:
                progress(subject)
            return records

        with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool, _killing_on_interrupt():
            raw = list(pool.map(lambda a: one(*a), [(i, s, fleet) for i, s in enumerate(subjects)]))
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
    overall = max((r.verdict for r in wrappers), key=RANK.__getitem__, default="clean")
    fix_subject = next((n for n in check.FIX_PREFERENCE for r in results
                        if r.subject == n and r.verdict == "clean"), None)  # fmt: skip
    fix = DISCARD_POOL_FIX if proof_result is not None else None
    if fix is None and fix_subject:
        from pooldoctor.probes import get_mode

        fix = get_mode(fix_subject).fix
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
        },
        results=tuple(results),
        findings=tuple(fleet_findings(results, proof, database.pool is not None)),
        fix=fix,
        fix_subject="discard-inherited-pool" if proof_result is not None else fix_subject,
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
                       raw.children_died, raw.stop_detail, raw.seconds)  # fmt: skip


def _check_app(spec: str) -> None:
    if ":" not in spec:
        raise UsageError(
            f"--app {spec!r} is not MODULE:ATTR", "for example --app mysite.celery:app"
        )


def _headline(wrappers: list[FleetResult], results: list[FleetResult]) -> str:
    if not wrappers:
        bad = [r.subject for r in results if r.verdict != "clean"]
        return (f"No project wrapper named: {len(results)} subjects simulated ({len(bad)} not "
                "clean). Name yours with --wrapper MODULE:ATTR.")  # fmt: skip
    worst = max(wrappers, key=lambda r: RANK[r.verdict])
    if worst.verdict == "clean":
        return f"Clean: {', '.join(r.subject for r in wrappers)} across every worker process."
    return f"{worst.verdict.upper()}: {worst.subject}: {worst.summary}."
