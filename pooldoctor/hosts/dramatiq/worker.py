"""The broker module a real ``dramatiq`` command loads (``python -m dramatiq
pooldoctor.hosts.dramatiq.worker --processes P --threads T --queues <run's queue>``).

Each worker process imports it (the command's main process never does): it loads the project's
settings, points django-dramatiq's ``DRAMATIQ_BROKER`` at the run's Redis (its middleware kept, in
its order), sets Django up (django-dramatiq builds the broker there, as in the project's own
workers), and puts pooldoctor's middleware first on that broker: its ``before_process_message``
runs before every other one, and its ``after_process_message`` after every other one (Dramatiq
runs the ``after_`` hooks in reverse order), so the record sees the connections as
DbConnectionsMiddleware left them. ``after_process_boot`` is where each process starts its census
(and where the fix discards an inherited pool).

Nothing here runs outside a worker started by :func:`pooldoctor.hosts.fleet.run_runner_fleet`; the
spec comes from the file named by ``POOLDOCTOR_SIMULATE``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import dramatiq
from dramatiq import Middleware
from dramatiq.brokers.redis import RedisBroker

from pooldoctor.core import lifeline
from pooldoctor.hosts import get_host
from pooldoctor.hosts.dramatiq import (
    PROBE_ACTOR,
    PROMETHEUS,
    django_integration,
    parent_loads_project,
)
from pooldoctor.hosts.dramatiq.process import purge
from pooldoctor.hosts.probe_worker import ProbeWorker

WORKER = ProbeWorker()
SPEC = WORKER.spec
# Before anything of the project's runs: if pooldoctor dies, delete this run's keys on the user's
# Redis, then end the command and its worker processes.
lifeline.arm(on_death=lambda: purge(SPEC["broker"], SPEC["namespace"]))
RUN_OPTIONS: dict[str, Any] = {"url": SPEC["broker"], "namespace": SPEC["namespace"]}
RUN_BROKER: dict[str, Any] = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": RUN_OPTIONS,
}
BOOTED = WORKER.directory / "dramatiq-booted"


class ProbeMiddleware(Middleware):
    """pooldoctor's census around each message, first on the broker."""

    def after_process_boot(self, broker: Any) -> None:
        WORKER.process_started(forked=parent_loads_project())
        if SPEC["apply_fix"]:
            WORKER.discard_inherited_pool()  # the fix, in the runner's own per-process hook

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        """Ready once every process of the command takes messages: the tasks spread."""
        BOOTED.mkdir(exist_ok=True)
        (BOOTED / str(os.getpid())).touch()
        expected = SPEC["workers"] if SPEC["pool"] == "processes" else 1
        if len(list(BOOTED.iterdir())) >= expected:
            WORKER.ready(READY)

    def before_process_message(self, broker: Any, message: Any) -> None:
        WORKER.task_started(message.message_id, message.actor_name)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:  # fmt: skip
        WORKER.task_finished(message.message_id, error=exception, retval=result)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        WORKER.task_finished(message.message_id, error=RuntimeError("the message was skipped"))


def _bootstrap() -> tuple[Any, str]:
    WORKER.configure()
    from django.conf import settings

    # django-dramatiq builds its broker from DRAMATIQ_BROKER at django.setup(): the project's
    # middleware, on the run's Redis. A project without django-dramatiq gets the same broker
    # with Dramatiq's default middleware, set before its actors are declared.
    project = getattr(settings, "DRAMATIQ_BROKER", None) or {}
    settings.DRAMATIQ_BROKER = {**RUN_BROKER, "MIDDLEWARE": [
        m for m in project.get("MIDDLEWARE", ()) if m != PROMETHEUS
    ]} if project else RUN_BROKER  # fmt: skip
    if not project:
        dramatiq.set_broker(RedisBroker(**RUN_OPTIONS))
    WORKER.setup()
    broker = dramatiq.get_broker()
    if not isinstance(broker, RedisBroker) or broker.namespace != SPEC["namespace"]:
        raise SystemExit("the project replaced the Dramatiq broker pooldoctor pointed at the run's "
                         f"Redis ({type(broker).__name__}): simulate cannot feed it")  # fmt: skip
    first = broker.middleware[0] if broker.middleware else None
    broker.add_middleware(ProbeMiddleware(), before=type(first) if first else None)
    # A worker consumes only declared queues: the run's, where every message is sent (the
    # project's actor is found by its name, whatever its own queue).
    broker.declare_queue(SPEC["queue"])
    run = WORKER.subject_task()
    if get_host("dramatiq").owns(run):
        return broker, str(run.actor_name)  # the project's actor, on this broker
    declare = dramatiq.actor(actor_name=PROBE_ACTOR, queue_name=SPEC["queue"], broker=broker)
    declare(run)
    return broker, PROBE_ACTOR


BROKER, NAME = _bootstrap()
READY = {
    "task": NAME,
    "version": dramatiq.__version__,
    "command": " ".join(["dramatiq", *sys.argv[1:]]),
    "django_integration": django_integration(BROKER),
    "middleware": [type(m).__name__ for m in BROKER.middleware],
    "parent_loads_project": parent_loads_project(),
}
