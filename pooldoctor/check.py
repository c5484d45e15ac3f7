"""``pooldoctor check``: load the project, run every subject in isolation, judge, build the report.

The parent loads the project once itself, so bad settings, an unreachable database or a broken
wrapper fail in a second with one clear line, before any subject process starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
import uuid
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from pooldoctor import findings, isolation, project, verdict
from pooldoctor.errors import ProjectError
from pooldoctor.model import DatabaseInfo, Report, SubjectResult, Verdict
from pooldoctor.probes import all_modes
from pooldoctor.probes.task import make_probe_task
from pooldoctor.subjects import Subject, decorate, load_wrapper, parse_wrapper, select_modes

# The clean patterns to recommend, most Django-like first (only ones that measured clean count).
FIX_PREFERENCE = ("thread-sensitive-context-closed", "async-to-sync", "owned-executor")


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


def run_check(options: CheckOptions, progress: isolation.Progress | None = None) -> Report:
    started = time.monotonic()
    subjects = [*select_modes(list(options.modes) if options.modes is not None else None)]
    subjects += [parse_wrapper(w) for w in options.wrappers]
    with database_override(options.database) as (override, source):
        spec = project.ProjectSpec(
            settings=options.settings,
            alias=options.alias,
            pythonpath=options.pythonpath,
            cwd=options.cwd,
            database=override,
        )
        run_id = uuid.uuid4().hex[:8]
        database = preflight(spec, source, run_id, [s for s in subjects if s.kind == "wrapper"])
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
        )
    descriptions = {m.name: m.summary for m in all_modes()}
    results = tuple(
        verdict.judge(
            dataclasses.replace(r, description=descriptions.get(r.subject, "project wrapper"))
        )
        for r in runs
    )
    return build_report(results, database, time.monotonic() - started)


def build_report(
    results: tuple[SubjectResult, ...], database: DatabaseInfo, seconds: float
) -> Report:
    fix_subject = next(
        (
            name
            for name in FIX_PREFERENCE
            for r in results
            if r.subject == name and r.verdict is Verdict.CLEAN
        ),
        None,
    )
    fix = next((m.fix for m in all_modes() if m.name == fix_subject), None)
    wrappers = [r for r in results if r.run.kind == "wrapper"]
    overall = verdict.worst([r.verdict for r in wrappers])
    audit = findings.audit_config(
        database.pool,
        database.conn_max_age,
        database.health_checks,
        database.max_connections,
        database.reserved_connections,
    )
    return Report(
        verdict=overall,
        headline=headline(wrappers, results),
        environment=environment(),
        database=database,
        results=results,
        findings=tuple(audit + findings.measured(results, fix_subject)),
        fix=fix,
        fix_subject=fix_subject,
        seconds=round(seconds, 3),
    )


def headline(wrappers: list[SubjectResult], results: tuple[SubjectResult, ...]) -> str:
    if not wrappers:
        bad = [r.subject for r in results if r.verdict in (Verdict.LEAK, Verdict.PINNED)]
        return (
            f"No project wrapper named: {len(results)} built-in modes measured "
            f"({len(bad)} leak or pin connections here). Name yours with --wrapper MODULE:ATTR "
            "to get the project's verdict."
        )
    worst = max(wrappers, key=lambda r: r.verdict.rank)
    if worst.verdict is Verdict.CLEAN:
        names = ", ".join(r.subject for r in wrappers)
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
        from pooldoctor.embedded import ephemeral_postgres

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
