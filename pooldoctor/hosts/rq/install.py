"""The worker side of ``pooldoctor inspect --runner rq``, as a project installs it: RQ has no
signals, so the census is a worker class, made from the project's own::

    # myproject/workers.py
    from rq import Worker
    import pooldoctor.rq

    CensusWorker = pooldoctor.rq.install(Worker)

    # settings.py: RQ = {"WORKER_CLASS": "myproject.workers.CensusWorker"}
    # (or: manage.py rqworker --worker-class myproject.workers.CensusWorker)

The class does nothing until its worker starts working (a web process that imports it is not
touched): then the worker's main process writes the node's file and, for ``SimpleWorker``, its
own census; each work horse (``Worker`` forks one per job) starts its census first thing, and
every job is labelled ``function[job id]`` for the ledger, its snapshot written after it.
"""

from __future__ import annotations

import socket
from typing import Any

from pooldoctor.hosts import live


def worker_kind(worker_class: type) -> str:
    """``fork`` (a horse forked per job) or ``simple`` (the worker runs its jobs)."""
    from rq.worker import BaseWorker, SpawnWorker, Worker

    if not (isinstance(worker_class, type) and issubclass(worker_class, BaseWorker)):
        raise TypeError(f"pooldoctor.rq.install() takes an RQ worker class, not {worker_class!r}")
    if issubclass(worker_class, SpawnWorker):
        # Its horse is a new interpreter that finds the worker class again by its name.
        raise TypeError("pooldoctor.rq.install() does not support SpawnWorker: use Worker or "
                        "SimpleWorker (or a subclass)")  # fmt: skip
    return "fork" if issubclass(worker_class, Worker) else "simple"


def install(worker_class: type | None = None, *, alias: str = "default", tracking: bool = True,
            timeline: int = live.TIMELINE) -> type:  # fmt: skip
    """A subclass of ``worker_class`` (RQ's ``Worker`` by default) whose processes keep
    pooldoctor's census of ``alias``'s connections (``tracking``: each checkout's call stack,
    for leak sites; ``timeline``: the latest checkouts each snapshot shows, 0 for none)."""
    from rq.worker import Worker

    base: type = worker_class or Worker
    kind = worker_kind(base)
    installation = live.Installation(alias, tracking, timeline)

    class CensusHooks:
        def bootstrap(self, *args: Any, **kwargs: Any) -> None:
            super().bootstrap(*args, **kwargs)  # type: ignore[misc]
            # The main process, registered and about to take jobs.
            hostname = f"{self.name}@{socket.gethostname()}"  # type: ignore[attr-defined]
            installation.start_node(hostname, kind, 1, forks=kind != "simple", runner="rq")

        def main_work_horse(self, *args: Any, **kwargs: Any) -> None:
            installation.start_process(forked=True)  # the horse, just forked
            super().main_work_horse(*args, **kwargs)  # type: ignore[misc]

        def perform_job(self, job: Any, *args: Any, **kwargs: Any) -> Any:
            installation.task_started(job.id, str(job.func_name))
            ok = False
            try:
                ok = bool(super().perform_job(job, *args, **kwargs))  # type: ignore[misc]
                return ok
            finally:
                installation.task_finished(job.id, "SUCCESS" if ok else "FAILURE")

        def teardown(self) -> None:
            super().teardown()  # type: ignore[misc]
            if not self.is_horse:  # type: ignore[attr-defined]
                installation.on_process_shutdown()
                installation.on_worker_shutdown()

    namespace = {"__module__": base.__module__, "pooldoctor_installation": installation}
    return type(f"Census{base.__name__}", (CensusHooks, base), namespace)
