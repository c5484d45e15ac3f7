"""``pooldoctor inspect``: load the app (and Django), ask the fleet, read the server, judge.

One :func:`inspect_once` per report; ``--watch`` calls it again every interval.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

from pooldoctor.commands import check
from pooldoctor.core import project, server
from pooldoctor.core.model import InspectReport
from pooldoctor.core.verdict.live import judge
from pooldoctor.errors import ProjectError, UsageError
from pooldoctor.hosts import runner_host, worker_host
from pooldoctor.hosts.base import WorkerHost


@dataclasses.dataclass(frozen=True)
class InspectOptions:
    app: str
    """The Celery app (``MODULE:ATTR``); empty for the other runners."""
    settings: str | None
    pythonpath: tuple[str, ...]
    alias: str
    timeout: float
    destination: tuple[str, ...]
    cwd: str
    runner: str = "celery"


# The host whose running workers inspect asks by default (its app is --app).
HOST = "celery"


def fleet_host(options: InspectOptions) -> WorkerHost:
    """Celery, or the ``--runner`` named (an unknown name is one line)."""
    if options.runner == HOST:
        return worker_host(HOST)
    try:
        return runner_host(options.runner)
    except LookupError as exc:
        raise UsageError(str(exc), "choose one of them with --runner NAME") from exc


@dataclasses.dataclass(frozen=True)
class Target:
    """The loaded project: its Celery app and, with Django settings, its database alias."""

    app: Any
    alias: str | None
    """None without Django settings: no server view."""
    why_no_server: str | None = None


def load(options: InspectOptions) -> Target:
    """Put the project on sys.path, import its settings and Celery app, set Django up."""
    for entry in reversed((options.cwd, *options.pythonpath)):
        path = os.path.abspath(entry)
        if path not in sys.path:
            sys.path.insert(0, path)
    if options.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = options.settings
        project.import_settings(options.settings)
    host = fleet_host(options)
    app = host.load_app(options.app) if options.runner == HOST else None
    settings = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings:
        return Target(app, None, "no Django settings: pass --settings or set "
                      "DJANGO_SETTINGS_MODULE")  # fmt: skip
    if not options.settings:
        project.import_settings(settings)
    try:
        import django

        django.setup()
    except Exception as exc:
        raise ProjectError(
            f"django.setup() with {settings!r} raised {type(exc).__name__}: {exc}",
            "fix the settings (run with --debug for the traceback)",
        ) from exc
    try:
        project.database_settings(options.alias)
    except ProjectError as exc:
        return Target(app, None, str(exc))
    return Target(app, options.alias)


def inspect_once(target: Target, options: InspectOptions) -> InspectReport:
    started = time.monotonic()
    answers = fleet_host(options).ask(target.app, options.timeout, options.destination)
    if target.alias is None:
        rows = server.unavailable("-", target.why_no_server or "no database")
    else:
        rows = server.read(target.alias, options.timeout)
    return judge(
        answers.replies,
        answers.pinged,
        answers.destination,
        rows,
        received_at=answers.received_at,
        broker=answers.broker,
        timeout=options.timeout,
        environment=check.environment(),
        seconds=round(time.monotonic() - started, 3),
        problems=answers.problems,
    )
