"""The hosts pooldoctor knows, in the order they claim an object: the first whose
:meth:`~pooldoctor.hosts.base.Host.owns` says yes runs it. In-process comes last: it owns any
plain callable. Importing this imports no host's library (each imports its own when asked).
"""

from __future__ import annotations

from typing import Any

from pooldoctor.hosts.base import Host, RunnerHost, WorkerHost
from pooldoctor.hosts.celery import CeleryHost
from pooldoctor.hosts.django_q import DjangoQHost
from pooldoctor.hosts.dramatiq import DramatiqHost
from pooldoctor.hosts.huey import HueyHost
from pooldoctor.hosts.inprocess import InProcessHost
from pooldoctor.hosts.rq import RQHost
from pooldoctor.hosts.tasks import TasksHost

HOSTS: tuple[Host, ...] = (
    CeleryHost(),
    TasksHost(),
    DramatiqHost(),
    HueyHost(),
    RQHost(),
    DjangoQHost(),
    InProcessHost(),
)


def all_hosts() -> tuple[Host, ...]:
    return HOSTS


def get_host(name: str) -> Host:
    """The host called ``name`` (``celery``, ``inprocess``...)."""
    for host in HOSTS:
        if host.name == name:
            return host
    known = ", ".join(h.name for h in HOSTS)
    raise LookupError(f"unknown host {name!r} (known: {known})")


def worker_host(name: str) -> WorkerHost:
    """The host called ``name``, which must have workers of its own (``celery``)."""
    host = get_host(name)
    if not isinstance(host, WorkerHost):
        raise LookupError(f"the {name} host has no workers of its own")
    return host


def host_for(obj: Any) -> Host:
    """The host that runs ``obj``: LookupError when none does (a class, a module, a string)."""
    for host in HOSTS:
        if host.owns(obj):
            return host
    raise LookupError(f"no host runs a {type(obj).__name__}")


def runner_hosts() -> tuple[RunnerHost, ...]:
    """The task runners ``simulate --runner`` starts besides Celery."""
    return tuple(h for h in HOSTS if isinstance(h, RunnerHost))


def runner_host(name: str) -> RunnerHost:
    """The runner called ``name`` on the command line (``rq``, ``django-tasks``...)."""
    for host in runner_hosts():
        if name in (host.runner_name, host.name):
            return host
    known = ", ".join(["celery", *(h.runner_name for h in runner_hosts())])
    raise LookupError(f"unknown runner {name!r} (known: {known})")
