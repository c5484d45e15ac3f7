"""``pooldoctor simulate --server gunicorn|uvicorn|daphne``: the project's web application served by
a real server, fed real requests, judged per worker process.

Same preflight as ``check``, then one server run per subject: the built-in echo (a query through
Django's own handler on the request's connection, always) and each of the project's ``--url``.
Replies crossed between worker processes make the project ``unsafe``; then the fleet rules as for
Celery workers (sessions left behind per request: ``leak``). Where the server forks an application
it imported (gunicorn), a run that shows the fork hazard is run again with the fix (a ``post_fork``
hook that drops the inherited connections) and the report says what that run measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from pooldoctor import extras
from pooldoctor.commands import check
from pooldoctor.commands.simulate import SimulateProgress, app_hazard, crosses, inherits
from pooldoctor.core import findings, lifeline, verdict
from pooldoctor.core.findings.fleet import fleet_findings
from pooldoctor.core.model import Fix, FleetResult, SimulateReport, Verdict
from pooldoctor.core.subjects import Subject
from pooldoctor.core.verdict.fleet import judge_fleet
from pooldoctor.errors import MissingExtraError, PooldoctorError, ProjectError, UsageError
from pooldoctor.hosts.servers import (
    Server,
    ServerOptions,
    ServerRecords,
    kill_all,
    run_server,
)
from pooldoctor.hosts.servers.registry import servers

ECHO = "echo"
OWN_KINDS = ("echo", "url")


@dataclasses.dataclass(frozen=True)
class ServerSimulateOptions:
    check: check.CheckOptions
    server: ServerOptions


def server_for(options: ServerOptions) -> Server:
    """The server, installed (with uvicorn too for gunicorn's uvicorn workers), or one line."""
    server = servers()[options.server]
    needed = [server]
    if options.worker_class == "uvicorn" and server.name == "gunicorn":
        needed.append(servers()["uvicorn"])
    extras.require("httpx", "servers", "--server (its requests are sent with httpx)")
    for each in needed:
        if not each.installed():
            raise MissingExtraError(
                f"--server {options.server} needs {each.distribution}, which is not installed",
                "pip install 'pooldoctor[servers]'",
            )
    return server


def run_server_simulation(options: ServerSimulateOptions,
                          progress: SimulateProgress | None = None) -> SimulateReport:  # fmt: skip
    started = time.monotonic()
    opts, served = options.check, options.server
    server = server_for(served)
    lifeline.reap_stale()
    subjects = [Subject(ECHO, "echo")] + [Subject(url, "url") for url in served.urls]
    with check.database_override(opts.database) as (override, source):
        spec = check.project_spec(opts, override, source)
        run_id = uuid.uuid4().hex[:8]
        database = check.preflight(spec, source, run_id, [])
        host = request_host()
        _check_app(served.app)

        def one(index: int, subject: Subject, apply_fix: bool = False) -> ServerRecords:
            fix_name = (server.fix() or ("fix", ""))[0]
            label = f"{subject.name} + {fix_name}" if apply_fix else subject.name
            told = functools.partial(progress, label) if progress else None
            return run_server(spec, server, subject, served, run_id, index, host,
                              apply_fix=apply_fix, progress=told)  # fmt: skip

        with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool, _killing_on_interrupt():
            raw = list(pool.map(lambda a: one(*a), enumerate(subjects)))
            _started(raw, server)
            results = [judge(r, opts.alias) for r in raw]
            # Prove the fix where the fork hazard showed, with the server's own hook.
            targets = [r for r in results if inherits(r)] if server.fix() else []
            by_name = {s.name: s for s in subjects}
            proof_raw = list(pool.map(
                lambda a: one(len(subjects) + a[0], by_name[a[1].subject], True),
                enumerate(targets),
            ))  # fmt: skip
            _started(proof_raw, server)
    proofs = [(target, judge(r, opts.alias)) for target, r in zip(targets, proof_raw, strict=True)]
    fix_name = (server.fix() or ("", ""))[0]
    results += [dataclasses.replace(proof, subject=f"{proof.subject} + {fix_name}", kind="fix")
                for _, proof in proofs]  # fmt: skip
    hazard = app_hazard(results)
    own = [r for r in results if r.kind in OWN_KINDS]
    fix = _proof_fix(server, proofs) if proofs else None
    facts = server.facts(served)
    ready = next((r.ready for r in raw if r.ready), {})
    return SimulateReport(
        verdict=verdict.project_verdict([r.verdict for r in own], [hazard] if hazard else []),
        headline=headline(own, results, hazard, fix, facts.concurrency or ""),
        environment={**check.environment(), server.name: facts.version},
        database=database,
        celery={},
        server={
            "name": server.name,
            "version": facts.version,
            "command": ready.get("command", ""),
            "interface": server.interface(served),
            "concurrency": facts.concurrency,
            "workers": served.workers,
            "preload": served.preload,
            "worker_class": served.worker_class if server.name == "gunicorn" else None,
            "app": served.app or f"the {server.interface(served)} module next to the settings",
            "requests": served.requests,
            "concurrent_requests": served.concurrency,
            "forks_imported_app": server.forks(served) and served.preload,
        },
        results=tuple(results),
        findings=tuple(
            fleet_findings(
                [r for r in results if r.kind != "fix"],
                fix.detail if fix else None,
                database.pool is not None,
                discard=_discard_words(server),
            )
            + (findings.writes_refused(own, database.dsn) if spec.read_only else [])
            + findings.direct_connections(own)
        ),
        fix=fix,
        seconds=round(time.monotonic() - started, 3),
    )


def request_host() -> str:
    """A Host header the project's ALLOWED_HOSTS accepts."""
    from django.conf import settings

    hosts = [h for h in settings.ALLOWED_HOSTS if h not in ("*", ".")]
    return hosts[0].lstrip(".") if hosts else "localhost"


def _check_app(spec: str | None) -> None:
    """``--app MODULE:ATTR`` names a module that exists (importing it is the server's job: a
    query at import must run there, not here)."""
    if spec is None:
        return
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UsageError(
            f"--app {spec!r} is not MODULE:ATTR", "for example --app mysite.wsgi:application"
        )
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ProjectError(
            f"--app {spec}: no module {module!r}",
            "run pooldoctor from the project directory, or pass --pythonpath",
        )


def judge(raw: ServerRecords, alias: str) -> FleetResult:
    result = judge_fleet(raw.subject.name, raw.subject.kind, raw.sent, raw.records, [],
                         raw.stop_detail, raw.seconds, raw.leak_sites,
                         raw.timelines)  # fmt: skip
    if raw.subject.kind == "url" and raw.records and not result.echoes and not result.errors:
        return dataclasses.replace(result, summary=(
            f"{raw.subject.name} made no query on alias {alias!r} in {len(raw.records)} "
            "requests: nothing was measured"
        ))  # fmt: skip
    return result


def _discard_words(server: Server) -> str:
    if server.name == "gunicorn":
        return "drop the connections the worker inherited in gunicorn's post_fork hook"
    return "open no connection before the server starts its workers (no query at import)"


def _proof_fix(server: Server, proofs: list[tuple[FleetResult, FleetResult]]) -> Fix:
    name, code = server.fix() or ("", "")
    target, best = min(proofs, key=lambda p: (inherits(p[1]), p[1].verdict.rank))
    parts = []
    for subject, proof in proofs:
        after = (
            "still shared sockets"
            if crosses(proof)
            else "no reply crossed, no inherited connection used"
        )
        parts.append(f"{subject.subject} measured {proof.verdict} ({after})")
    return Fix(name, code, applied_to=target.subject, measured=best.verdict,
               detail="with post_fork dropping the inherited connections: "
               + "; ".join(parts))  # fmt: skip


def headline(own: list[FleetResult], results: list[FleetResult], hazard: Verdict | None,
             fix: Fix | None, how: str) -> str:  # fmt: skip
    if hazard is Verdict.UNSAFE:
        shared = [r for r in results if r.kind != "fix" and crosses(r)]
        crossed = sum(r.crossed_replies for r in shared)
        answered = sum(r.tasks for r in shared)
        foreign = sum(w.inherited_connections for r in shared for w in r.workers)
        proof = ""
        if fix is not None and fix.applied_to is not None:
            proof = (f" With post_fork dropping the inherited connections: {fix.measured} on "
                     f"{fix.applied_to}.")  # fmt: skip
        return (
            f"UNSAFE: the server's worker processes ({how}) share database connections: "
            f"{crossed} of {answered} replies crossed, {foreign} connection(s) used by a process "
            f"that did not open them ({', '.join(r.subject for r in shared)}).{proof}"
        )
    top = max(own, key=lambda r: r.verdict.rank) if own else None
    if top is None or top.verdict is Verdict.CLEAN:
        echoed = sum(r.echoes for r in own)
        return (f"Clean: every worker process kept its connections to itself and gave them back "
                f"({echoed} requests echoed their own reply).")  # fmt: skip
    return f"{top.verdict.upper()}: {top.subject}: {top.summary}."


@contextlib.contextmanager
def _killing_on_interrupt() -> Iterator[None]:
    try:
        yield
    except BaseException:
        kill_all()
        raise


def _started(raw: list[ServerRecords], server: Server) -> None:
    for run in raw:
        if not run.ready:
            raise PooldoctorError(
                f"{server.name} did not start for {run.subject.name}: {run.stop_detail}",
                "check --app, and that the application imports with these settings",
            )
