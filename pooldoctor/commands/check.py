"""``pooldoctor check``: load the project, run every subject in isolation, judge, build the report.

The parent loads the project once itself, so bad settings, an unreachable database, a broken
wrapper or a ``--task`` that cannot run fail in a second with one clear line, before any subject
process starts. With ``--task`` on ``--database embedded`` the parent also runs the project's
migrations into the throwaway server, so the task finds its tables and may write there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any

from pooldoctor.core import findings, lifeline, project, verdict
from pooldoctor.core.fixes.prove import attach as attach_fixes
from pooldoctor.core.fixes.prove import prove_fixes, prove_url_fixes
from pooldoctor.core.model import (
    PROJECT_KINDS,
    DatabaseInfo,
    Finding,
    Fix,
    Report,
    SubjectResult,
    Verdict,
)
from pooldoctor.core.probes import all_modes, clean_pattern, get_mode
from pooldoctor.core.probes.task import make_probe_task
from pooldoctor.core.project_tasks import parse_task, resolve_task
from pooldoctor.core.subjects import Subject, decorate, load_wrapper, parse_wrapper, select_modes
from pooldoctor.errors import ProjectError, UsageError
from pooldoctor.hosts import worker_host
from pooldoctor.hosts.inprocess import isolation


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    settings: str
    alias: str = "default"
    pythonpath: tuple[str, ...] = ()
    wrappers: tuple[str, ...] = ()
    modes: tuple[str, ...] | None = None
    tasks: int = 12
    database: str | None = None
    """A postgresql:// URL, "embedded", or None for the project's own settings."""
    task_timeout: float = 10.0
    jobs: int = 2
    cwd: str = dataclasses.field(default_factory=os.getcwd)
    debug: bool = False
    tracking: bool = True
    """Capture each checkout's call stack, so leak sites can be named."""
    task_paths: tuple[str, ...] = ()
    """The project's own tasks to run (``--task``)."""
    task_args: tuple[Any, ...] = ()
    task_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    allow_writes: bool = False
    """Open the sessions read-write on the user's database (``--allow-writes``)."""
    urls: tuple[Mapping[str, Any], ...] = ()
    """The project's URLs to request (``--url``), as :class:`~pooldoctor.hosts.web.common.Request`
    wires."""
    web: Mapping[str, Any] | None = None
    """How web subjects send their requests: ``interface`` (asgi, wsgi), ``app``, ``requests``,
    ``concurrency``."""


def run_check(options: CheckOptions, progress: isolation.Progress | None = None) -> Report:
    started = time.monotonic()
    lifeline.reap_stale()  # what killed runs left behind: their servers, their directories
    subjects = select_subjects(options)
    with database_override(options.database) as (override, source):
        spec = project_spec(options, override, source)
        run_id = uuid.uuid4().hex[:8]
        database = preflight(spec, source, run_id, [s for s in subjects if s.kind == "wrapper"])
        check_urls(subjects, options.web)
        # A prefork child of the project's Celery app, forked once: does it keep the pool?
        forked = None
        if database.pool:
            forked = worker_host("celery").fork_check(spec, f"pooldoctor:{run_id}:fork")
        for path in options.task_paths:
            subjects += resolve_task(path, options.task_args, options.task_kwargs, options.wrappers)
        if options.task_paths and source == "embedded":
            migrate(spec.alias)
        runs = isolation.run_subjects(
            spec,
            subjects,
            tasks=options.tasks,
            task_timeout=options.task_timeout,
            jobs=options.jobs,
            run_id=run_id,
            debug=options.debug,
            progress=progress,
            tracking=options.tracking,
            web=options.web,
        )
        descriptions = {m.name: m.summary for m in all_modes()}
        kinds = {"wrapper": "project wrapper", "task": "project task", "url": "project URL"}
        # Requests are served by up to --concurrency threads at once, each of which may keep a
        # connection (CONN_MAX_AGE): one per thread is those threads, not a growing leak.
        served = {s.name for s in subjects if s.web}
        threads = int((options.web or {}).get("concurrency", 1))
        results = tuple(
            verdict.judge(dataclasses.replace(
                r, description=descriptions.get(r.subject, kinds.get(r.kind, ""))
            ), task_threads=threads if r.subject in served else 1)
            for r in runs
        )  # fmt: skip
        # Each leaking or pinning wrapper, patched with the closest clean pattern, run once more.
        fixes = prove_fixes(
            spec,
            results,
            clean_modes(results),
            lambda proofs: isolation.run_subjects(
                spec,
                proofs,
                tasks=options.tasks,
                task_timeout=options.task_timeout,
                jobs=options.jobs,
                run_id=f"{run_id}-fix",
                debug=options.debug,
                tracking=options.tracking,
                web=options.web,
            ),
        )
        # Each leaking URL, requested once more with the settings change that should fix it.
        fixes |= prove_url_fixes(
            subjects,
            results,
            spec.alias,
            database.pool is not None,
            database.conn_max_age,
            lambda proofs, change: isolation.run_subjects(
                dataclasses.replace(spec, database={**(spec.database or {}), **change}),
                proofs,
                tasks=options.tasks,
                task_timeout=options.task_timeout,
                jobs=options.jobs,
                run_id=f"{run_id}-url-fix",
                debug=options.debug,
                tracking=options.tracking,
                web=options.web,
            ),
        )
    results = attach_fixes(results, fixes)
    if spec.read_only:
        results = tuple(with_write_hint(r, database.dsn) for r in results)
    return build_report(
        results,
        database,
        time.monotonic() - started,
        read_only=spec.read_only,
        fork_findings=findings.shared_pool(forked, options.settings, options.alias),
    )


def project_spec(
    options: CheckOptions, override: Mapping[str, Any] | None, source: str
) -> project.ProjectSpec:
    """The project as every subject process loads it. Read-only sessions guard the user's data;
    the embedded server is thrown away after, so there they may write."""
    return project.ProjectSpec(
        settings=options.settings,
        alias=options.alias,
        pythonpath=options.pythonpath,
        cwd=options.cwd,
        database=override,
        read_only=not (options.allow_writes or source == "embedded"),
        allow_writes=options.allow_writes,
    )


def select_subjects(options: CheckOptions, *, worker: bool = False) -> list[Subject]:
    """The modes, wrappers and URLs to measure (tasks are added once the project is loaded).
    With ``--task`` the built-in modes run only when ``--modes`` names them; in process (not on a
    ``worker``) the worker-only modes run only when named. The request modes run by default
    beside ``--url`` (and then only they), otherwise only when named."""
    for path in options.task_paths:
        parse_task(path)
    modes = list(options.modes) if options.modes is not None else None
    subjects = [] if options.task_paths and modes is None else select_modes(modes)
    if modes is None:
        subjects = [s for s in subjects if get_mode(s.name).request == bool(options.urls)]
    if modes is None and not worker:
        subjects = [s for s in subjects if not get_mode(s.name).worker_only]
    urls = [Subject(name=f"{r['method']} {r['path']}", kind="url", request=r) for r in options.urls]
    return subjects + [parse_wrapper(w) for w in options.wrappers] + urls


def check_urls(subjects: Sequence[Subject], web: Mapping[str, Any] | None) -> None:
    """The application loads, every ``--url`` reaches a view of the project's URLconf, and
    ``--user`` exists: a request that only ever meets a 404 would measure nothing of the project."""
    if web is None or not any(s.web for s in subjects):
        return
    from pooldoctor.hosts.web.common import load_application

    load_application(web["interface"], web.get("app"), os.environ["DJANGO_SETTINGS_MODULE"])
    urls = [s for s in subjects if s.kind == "url" and s.request]
    if not urls:
        return
    from django.urls import Resolver404, resolve

    for subject in urls:
        request = subject.request or {}
        path = request["path"].partition("?")[0]
        try:
            resolve(path)
        except Resolver404:
            raise UsageError(
                f"--url {request['path']}: no pattern of the project's URLconf matches {path!r}",
                "check the path (it is the path part of the URL, after the host)",
            ) from None
    user = urls[0].request.get("user") if urls[0].request else None
    if user is not None:
        project.check_user(user)


def subject_count(options: CheckOptions) -> int:
    """How many subjects a check measures, for its progress line (an async function named with
    --task counts once, though it runs through every wrapper)."""
    return len(select_subjects(options)) + len(options.task_paths)


def migrate(alias: str) -> None:
    """Create the project's tables in the throwaway server, so its tasks run as in production."""
    from django.core.management import call_command
    from django.db import connections

    output = io.StringIO()  # stdout carries the report
    try:
        call_command(
            "migrate", database=alias, interactive=False, verbosity=0, stdout=output, stderr=output
        )
    except Exception as exc:
        raise ProjectError(
            f"migrate into the embedded database failed: {type(exc).__name__}: {exc}",
            "run the project's migrations on an empty database to reproduce it (--debug for the "
            "traceback)",
        ) from exc
    finally:
        # The subjects open their own pools: none of the parent's connections may stay.
        connection = connections[alias]
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def with_write_hint(result: SubjectResult, dsn: str) -> SubjectResult:
    """A project subject whose tasks failed on the read-only session gets a symptom saying how
    to let it write."""
    if result.kind not in PROJECT_KINDS or not findings.refused_writes(result):
        return result
    hint = findings.write_hint(result.kind, dsn)
    return dataclasses.replace(result, symptoms=(*result.symptoms, hint))


def build_report(
    results: tuple[SubjectResult, ...],
    database: DatabaseInfo,
    seconds: float,
    *,
    read_only: bool = True,
    fork_findings: Sequence[Finding] = (),
) -> Report:
    pattern = clean_pattern(clean_modes(results))
    fix_subject = pattern.name if pattern else None
    code = pattern.fix if pattern else None
    own = [r for r in results if r.kind in PROJECT_KINDS]
    overall = verdict.project_verdict([r.verdict for r in own])
    audit = findings.audit_config(
        database.pool,
        database.conn_max_age,
        database.health_checks,
        database.max_connections,
        database.reserved_connections,
    )
    refused = findings.writes_refused(results, database.dsn) if read_only else []
    return Report(
        verdict=overall,
        headline=headline(own, results),
        environment=environment(),
        database=database,
        results=results,
        findings=tuple(audit + findings.measured(results, fix_subject) + refused)
        + tuple(findings.direct_connections(results))
        + tuple(fork_findings),
        fix=Fix(subject=fix_subject, code=code) if code is not None else None,
        seconds=round(seconds, 3),
    )


def clean_modes(results: Sequence[SubjectResult]) -> list[str]:
    """The built-in modes that measured clean in this run."""
    return [r.subject for r in results if r.kind == "mode" and r.verdict is Verdict.CLEAN]


def headline(own: list[SubjectResult], results: tuple[SubjectResult, ...]) -> str:
    """One sentence for the project: its worst wrapper or task, or what to name."""
    measured = [r for r in own if r.verdict is not Verdict.SKIPPED]
    if not measured:
        bad = [r.subject for r in results if r.verdict in (Verdict.LEAK, Verdict.PINNED)]
        return (
            "UNMEASURED: nothing of the project's own ran, so there is no verdict on it: "
            f"{len(results)} built-in modes measured ({len(bad)} leak or pin connections here). "
            "Name the project's decorator with --wrapper MODULE:ATTR, or a task with --task."
        )
    worst = max(measured, key=lambda r: r.verdict.rank)
    if worst.verdict is Verdict.CLEAN:
        names = ", ".join(r.subject for r in own)
        return f"Clean: {names} returned every connection it took, failed tasks included."
    return f"{worst.verdict.value.upper()}: {worst.subject} {worst.summary}."


def environment() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("django", "psycopg", "psycopg-pool", "asgiref", "celery"):
        try:
            versions[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist.replace("-", "_")] = "not installed"
    versions["pooldoctor"] = metadata.version("pooldoctor")
    return versions


@contextlib.contextmanager
def database_override(target: str | None) -> Iterator[tuple[Mapping[str, Any] | None, str]]:
    if target is None:
        yield None, "settings"
    elif target == "embedded":
        from pooldoctor.core.embedded import ephemeral_postgres

        with ephemeral_postgres() as override:
            yield override, "embedded"
    else:
        yield project.parse_database_url(target), "url"


def preflight(
    spec: project.ProjectSpec, source: str, run_id: str, wrappers: list[Subject]
) -> DatabaseInfo:
    """Load the project here once: every error the user can fix surfaces before subjects run."""
    project.prepare_sys_path(spec)
    os.environ["DJANGO_SETTINGS_MODULE"] = spec.settings
    project.import_settings(spec.settings)
    entry = project.database_settings(spec.alias)
    options = entry.get("OPTIONS", {})
    if options.get("pool") and entry.get("CONN_MAX_AGE", 0):
        raise ProjectError(
            f"DATABASES[{spec.alias!r}] sets CONN_MAX_AGE={entry['CONN_MAX_AGE']} with "
            "OPTIONS['pool']: Django refuses this (\"Pooling doesn't support persistent "
            'connections")',
            "set CONN_MAX_AGE to 0: the pool keeps the connections",
        )
    password = (spec.database or {}).get("PASSWORD") or entry.get("PASSWORD")
    project.apply_overrides(entry, spec, f"pooldoctor:{run_id}")
    import django

    try:
        django.setup()
    except Exception as exc:
        raise ProjectError(
            f"django.setup() failed with settings {spec.settings!r}: {type(exc).__name__}: {exc}",
            "run with --debug for the traceback",
        ) from exc
    facts = project.probe_server(spec.alias, password)
    probe = make_probe_task(spec.alias)
    for wrapper in wrappers:
        decorate(wrapper.name, load_wrapper(wrapper.name), probe)
    return DatabaseInfo(
        alias=spec.alias,
        vendor="postgresql",
        dsn=project.describe_target(entry),
        pool=findings.pool_settings(options.get("pool")),
        conn_max_age=entry.get("CONN_MAX_AGE", 0),
        server_version=facts.version,
        max_connections=facts.max_connections,
        source=source,
        health_checks=bool(entry.get("CONN_HEALTH_CHECKS")),
        reserved_connections=facts.reserved_connections,
    )
