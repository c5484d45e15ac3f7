"""Celery: a task run in-process through Celery's own tracer (``check``), real workers started,
fed and stopped (``simulate``: :mod:`.fleet` starts them, :mod:`.worker` is what they load), a
running fleet asked for its census (``inspect``: :mod:`.control`), and the one line a project
adds to its workers for that (:mod:`.install`, public as :mod:`pooldoctor.celery`).

Celery, kombu and billiard are imported in this package only, inside the functions that use them:
importing it (as :mod:`pooldoctor.hosts` does) imports none of them.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from pooldoctor.core.model import ForkCheck
from pooldoctor.core.project import ProjectSpec
from pooldoctor.errors import PooldoctorError, ProjectError, UsageError
from pooldoctor.hosts.base import HostFacts, LiveAnswers, WorkerHost

BROKER_TIMEOUT = 3.0
# The signals through which a project's own code touches connections in a worker process.
SIGNALS = ("worker_process_init", "worker_process_shutdown", "task_prerun", "task_postrun")


class CeleryHost(WorkerHost):
    name = "celery"
    distribution = "celery"

    def owns(self, obj: Any) -> bool:
        if "celery" not in sys.modules:  # no Celery object can exist: do not import it
            return False
        from celery.app.task import Task

        return isinstance(obj, Task)

    def runner(self, task: Any) -> Callable[..., Any]:
        """Run a Celery task in this thread through Celery's tracer, as a solo worker does; the
        returned function takes the task's arguments.

        ``task.apply()`` would mark the request eager, and Celery's Django fix-up skips its
        database cleanup for eager tasks; a worker's tracer runs the task with ``is_eager=False``
        and the fix-up's ``task_prerun``/``task_postrun`` handlers, so that is what runs here.
        Results are not stored (``ignore_result``), so no result backend is touched.
        """
        from celery import states
        from celery.app.trace import build_tracer

        install_worker_fixup(task.app)
        tracer = build_tracer(task.name, task, app=task.app, eager=False, propagate=False)

        def run(*args: Any, **kwargs: Any) -> Any:
            task_id = uuid.uuid4().hex
            request = {"id": task_id, "ignore_result": True, "delivery_info": {"is_eager": False}}
            retval, info, _, _ = tracer(task_id, args, kwargs, request)
            if info is not None and info.state in (states.FAILURE, states.RETRY):
                raise info.retval
            return retval

        return run

    def refusal(self, task: Any) -> str | None:
        """A task on an async def whose class does not await it: Celery's tracer calls ``run``
        directly unless the task's class overrides ``__call__`` (a base class that runs an event
        loop does, and then the coroutine is awaited)."""
        from celery.app.task import Task

        if inspect.iscoroutinefunction(task.run) and task.__class__.__call__ is Task.__call__:
            return (
                "a Celery task on an async def: Celery never awaits the coroutine, so the "
                "task's body never runs"
            )
        return None

    def signature_target(self, task: Any) -> Any:
        return task.run

    def facts(self, app: Any = None) -> HostFacts:
        if not self.installed():
            return super().facts(app)
        return HostFacts(
            name=self.name,
            version=self.version(),
            concurrency=_configured_pool(app),
            handlers=tuple(signal_handlers()),
            django=django_integration(app, self.version()),
        )

    def load_app(self, spec: str) -> Any:
        if ":" not in spec:
            raise UsageError(
                f"--app {spec!r} is not MODULE:ATTR", "for example --app mysite.celery:app"
            )
        from celery import Celery

        module_name, _, attr = spec.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ProjectError(
                f"--app {spec}: cannot import module {module_name!r}: {exc}",
                "run pooldoctor from the project directory, or pass --pythonpath",
            ) from exc
        except Exception as exc:
            raise ProjectError(
                f"--app {spec}: importing {module_name!r} raised {type(exc).__name__}: {exc}",
                "fix the error in that module (run with --debug for the traceback)",
            ) from exc
        for part in attr.removesuffix("()").split("."):
            if not hasattr(found, part):
                raise ProjectError(
                    f"--app {spec}: {module_name!r} has no attribute {part!r}",
                    "name the project's Celery instance, for example --app mysite.celery:app",
                )
            found = getattr(found, part)
        if attr.endswith("()"):
            try:
                found = found()
            except Exception as exc:
                raise ProjectError(
                    f"--app {spec}: calling it raised {type(exc).__name__}: {exc}",
                    "run with --debug for the traceback",
                ) from exc
        if not isinstance(found, Celery):
            raise ProjectError(
                f"--app {spec} is a {type(found).__name__}, not a Celery app",
                "name the project's Celery instance, for example --app mysite.celery:app",
            )
        return found

    def check_broker(self, url: str) -> None:
        """Reach the broker from here first: a worker retries a broker that is down for ever, and
        one whose client library is missing dies with kombu's AttributeError."""
        if url == "embedded":
            return
        from kombu import Connection

        from pooldoctor.core.project import mask_url
        from pooldoctor.hosts.celery.control import BrokerUnreachable, reach_broker

        shown = mask_url(url)
        try:
            connect = lambda: Connection(url, connect_timeout=BROKER_TIMEOUT)  # noqa: E731
            reach_broker(connect, f"--broker {shown}", BROKER_TIMEOUT)
        except BrokerUnreachable as exc:
            raise PooldoctorError(
                f"--broker {shown}: cannot connect: {exc.__cause__}",
                "start the broker, fix the URL, or use --broker embedded",
            ) from exc.__cause__

    def ask(self, app: Any, timeout: float, destination: Sequence[str] = ()) -> LiveAnswers:
        from pooldoctor.hosts.celery import control

        return control.ask(app, timeout, destination)

    def fork_check(self, spec: ProjectSpec, application_name: str) -> ForkCheck | None:
        """What a prefork child of the project's own app keeps of the pool its parent had open
        (:mod:`.fork`), or None when Celery is not installed or the loaded project has no Celery
        app: then no process is started."""
        if not self.installed():
            return None
        from pooldoctor.hosts.celery import apps, fork

        where = apps.locate_app(spec.settings)
        if where is None:
            return None
        return fork.measure(spec, application_name, where)


def install_worker_fixup(app: Any) -> bool:
    """Install Celery's Django worker fix-up if the app has the Django fix-up, as ``worker_init``
    would. Returns whether it did."""
    for fixup in getattr(app, "_fixups", ()):
        if type(fixup).__name__ == "DjangoFixup":
            fixup.worker_fixup.install()
            return True
    return False


def signal_handlers() -> list[str]:
    """The project's receivers of :data:`SIGNALS` (``signal: module.function``), pooldoctor's own
    left out."""
    from celery import signals

    from pooldoctor.hosts.celery.apps import receiver_name

    names = []
    for name in SIGNALS:
        for _, receiver in getattr(signals, name).receivers:
            target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
            if receiver_name(target).startswith("pooldoctor."):
                continue
            names.append(f"{name}: {receiver_name(target)}")
    return sorted(set(names))


def django_integration(app: Any, version: str) -> str:
    """What the installed Celery's Django fix-up does to connections (read from its code, not
    its version: ``close_pool()`` came with celery/celery#9953, prefork-only since #10020)."""
    if app is not None and not any(
        type(f).__name__ == "DjangoFixup" for f in getattr(app, "_fixups", ())
    ):
        return "no Django fix-up on this app: Celery leaves Django's connections alone"
    from celery.fixups.django import DjangoWorkerFixup

    discards = any(
        "close_pool" in getattr(getattr(f, "__code__", None), "co_names", ())
        for f in vars(DjangoWorkerFixup).values()
    )
    if discards:
        return (
            f"Celery {version}'s Django fix-up closes the connections before and after each "
            "task and in each new worker process; with a pool configured, a prefork worker "
            "also discards the pool there (close_pool())"
        )
    return (
        f"Celery {version}'s Django fix-up closes unusable or obsolete connections before and "
        "after each task and the connections a prefork child inherited, but never discards "
        "a pool: a pool the parent opened before the fork stays in every child"
    )


def _configured_pool(app: Any) -> str | None:
    """The app's own worker_pool/worker_concurrency settings, if it sets either (a worker's
    command line can still override them)."""
    if app is None:
        return None
    try:
        conf = app.conf.table(with_defaults=False)
    except Exception:  # an app whose configuration cannot load says nothing here
        return None
    pool, concurrency = conf.get("worker_pool"), conf.get("worker_concurrency")
    if pool is None and concurrency is None:
        return None
    return f"{pool or 'prefork'} -c {concurrency}" if concurrency else str(pool)
