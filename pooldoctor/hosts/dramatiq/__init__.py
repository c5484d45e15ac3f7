"""Dramatiq (with django-dramatiq): an actor run in-process through the worker's own message path
(``check --task``), real ``dramatiq`` workers started, fed and stopped on a Redis broker
(``simulate --runner dramatiq``: :mod:`.worker` is the broker module they load), and the
middleware a project adds for ``inspect`` (:mod:`.install`, public as :mod:`pooldoctor.dramatiq`).

Measured in the installed sources, not assumed: the ``dramatiq`` command's main process never
imports the broker module or the project; each worker process, forked from it, imports them itself
(``import_broker`` runs in ``worker_process``), and ``manage.py rundramatiq`` replaces itself with
that command (``os.execvp``; libpq's sockets are close-on-exec). So no kind of Dramatiq worker
forks a process that loaded the project: a pool opened at import is each process's own
(``--prefork`` is refused). :func:`parent_loads_project` reads that from the installed CLI's code:
each worker process starts its census as forked if it ever says otherwise (and a test fails).

Dramatiq and django-dramatiq are imported in this package only, inside the functions that use them.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pooldoctor.hosts.base import HostFacts, RunnerHost

PROBE_ACTOR = "pooldoctor.probe"
"""The actor the probe (a mode, or a bare async def through the project's wrapper) runs as."""
PROMETHEUS = "dramatiq.middleware.prometheus.Prometheus"
"""Left out of the run's broker: its exposition server binds one port per machine, which the
fleets of one run (and the proof's) would fight over; it only exports metrics."""


class DramatiqHost(RunnerHost):
    name = "dramatiq"
    runner_name = "dramatiq"
    title = "Dramatiq"
    distribution = "dramatiq"
    pools = ("processes", "threads")
    # See the module's docstring: the CLI's parent never loads the project.
    forking = frozenset()
    fix = (
        "discard-inherited-pool-in-after_process_boot",
        "a middleware on the project's broker whose after_process_boot(self, broker) calls "
        "django.db.connections['default'].close_pool()",
    )
    uses_broker = True

    def task_threads(self, pool: str, workers: int) -> int:
        return workers if pool == "threads" else 1  # --threads N in one process

    # --- check --task --------------------------------------------------------------------------

    def owns(self, obj: Any) -> bool:
        if "dramatiq" not in sys.modules:  # no actor can exist: do not import it
            return False
        from dramatiq import Actor

        return isinstance(obj, Actor)

    def runner(self, task: Any) -> Callable[..., Any]:
        from pooldoctor.hosts.dramatiq.process import message_runner

        return message_runner(task)

    def refusal(self, task: Any) -> str | None:
        """An ``async def`` actor needs the AsyncIO middleware's event loop thread: without it
        the worker fails every message before the body runs."""
        if not inspect.iscoroutinefunction(inspect.unwrap(task.fn)):
            return None
        from dramatiq.middleware import AsyncIO

        if any(isinstance(m, AsyncIO) for m in task.broker.middleware):
            return None
        return (
            "an async def Dramatiq actor on a broker without the AsyncIO middleware: the worker "
            "fails every message (no event loop thread), so its body never runs"
        )

    def signature_target(self, task: Any) -> Any:
        return inspect.unwrap(task.fn)

    def facts(self, app: Any = None) -> HostFacts:
        if not self.installed():
            return super().facts(app)
        from dramatiq import broker as brokers

        # Not get_broker(): with none set, it would create a RabbitMQ broker.
        broker = app if app is not None else brokers.global_broker
        return HostFacts(
            name=self.name,
            version=self.version(),
            handlers=tuple(project_middleware(broker)),
            django=django_integration(broker),
        )

    # --- simulate ------------------------------------------------------------------------------

    def check_broker(self, url: str) -> None:
        """Dramatiq's workers here use Redis (a Redis that is down would only make them
        retry)."""
        self.reach_redis(url)

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        # Every key of the run (queues, acks, heartbeats) under the run's queue name: nothing is
        # shared with the project's own workers on the same Redis, and purge finds them all.
        return {"namespace": spec["queue"]}

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        workers = str(spec["workers"])
        processes, threads = (workers, "1") if spec["pool"] == "processes" else ("1", workers)
        return [sys.executable, "-m", "dramatiq", "pooldoctor.hosts.dramatiq.worker",
                "--processes", processes, "--threads", threads, "--queues", spec["queue"],
                "--worker-shutdown-timeout", "2000"]  # fmt: skip

    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """One message per task on the run's queue, its ``message_id`` the task's id, as
        ``actor.send()`` builds it; ``max_retries=0``: a simulate task runs once."""
        from dramatiq import Message
        from dramatiq.brokers.redis import RedisBroker

        name, args, kwargs = self._target(subject)
        broker = RedisBroker(url=spec["broker"], namespace=spec["namespace"], middleware=[])
        try:
            for entry in sent:
                message: Message[Any] = Message(
                    queue_name=spec["queue"], actor_name=name,
                    args=args if args is not None else (entry["kind"],), kwargs=kwargs,
                    options={"max_retries": 0}, message_id=entry["task_id"],
                )  # fmt: skip
                broker.enqueue(message)
        finally:
            broker.close()

    def _target(self, subject: Any) -> tuple[str, tuple[Any, ...] | None, dict[str, Any]]:
        """The actor a task is sent to, and its arguments (None: the probe's kind)."""
        if subject.kind != "task":
            return PROBE_ACTOR, None, {}
        args, kwargs = tuple(subject.args), dict(subject.kwargs)
        found = _loaded(subject.name) if subject.wrapper is None else None
        if found is not None and self.owns(found):
            return str(found.actor_name), args, kwargs
        return PROBE_ACTOR, args, kwargs  # a bare async def through the project's wrapper

    def purges(self, spec: Mapping[str, Any]) -> bool:
        return True

    def purge(self, spec: Mapping[str, Any]) -> None:
        from pooldoctor.hosts.dramatiq.process import purge

        purge(spec["broker"], spec["namespace"])


def _loaded(path: str) -> Any:
    """The object a ``--task`` path names, from the modules simulate already imported to check
    it (None if not found there)."""
    parts = path.replace(":", ".").split(".")
    for end in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None:
            found: Any = module
            for part in parts[end:]:
                found = getattr(found, part, None)
            return found
    return None


def project_middleware(broker: Any) -> list[str]:
    """The broker's middleware of the project's own (``module.Class``): neither Dramatiq's,
    django-dramatiq's nor pooldoctor's."""
    names = []
    for middleware in getattr(broker, "middleware", ()):
        cls = type(middleware)
        if not cls.__module__.startswith(("dramatiq.", "django_dramatiq.", "pooldoctor.")):
            names.append(f"middleware: {cls.__module__}.{cls.__qualname__}")
    return names


def django_integration(broker: Any) -> str:
    """What django-dramatiq's middleware on ``broker`` does to connections, read from its code."""
    found = next((m for m in getattr(broker, "middleware", ())
                  if type(m).__name__ == "DbConnectionsMiddleware"), None)  # fmt: skip
    if found is None:
        return ("no DbConnectionsMiddleware on the broker: Dramatiq leaves Django's connections "
                "alone around each message")  # fmt: skip
    from importlib import metadata

    try:
        version = metadata.version("django-dramatiq")
    except metadata.PackageNotFoundError:
        version = "(unknown version)"
    names: set[str] = set()
    for hook in ("before_process_message", "after_process_message"):
        code = getattr(getattr(type(found), hook, None), "__code__", None)
        names |= set(getattr(code, "co_names", ()))
    if "close_pool" in names:
        return (f"django-dramatiq {version}'s DbConnectionsMiddleware closes the connections "
                "around each message and discards the pool")  # fmt: skip
    what = "unusable or obsolete" if "close_old_connections" in names else "no"
    return (f"django-dramatiq {version}'s DbConnectionsMiddleware closes {what} connections "
            "before and after each message, on the thread that runs it, and all of them at "
            "worker shutdown; it never discards a pool")  # fmt: skip


def parent_loads_project() -> bool:
    """Whether the installed ``dramatiq`` command imports the broker module (and so the project)
    in its main process, before it forks the worker processes: read from its code."""
    from dramatiq import cli

    return "import_broker" in cli.main.__code__.co_names
