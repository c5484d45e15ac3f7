"""The worker side of ``pooldoctor inspect --runner django-q``: one call in the project's
``AppConfig.ready()`` (qcluster must have it before it forks its workers)::

    class MyAppConfig(AppConfig):
        def ready(self):
            import pooldoctor.django_q
            pooldoctor.django_q.install()

Nothing happens until a cluster starts: a web process that calls it only connects receivers
that never fire there. The cluster's sentinel (the process that forks the workers) starts the
node as it spawns them (``<tempdir>/pooldoctor-inspect/<node>/node.json``: ``cluster`` and its
number of workers); django-q has no signal for it, so :meth:`Sentinel.spawn_cluster` and
:meth:`Sentinel.stop` are wrapped. Each worker starts its census at ``post_spawn`` (first
thing in it), labels each task ``function[task id]`` from ``pre_execute`` to
``post_execute_in_worker`` (the last thing the worker does for a task) and writes its snapshot
after each task. ``pooldoctor inspect --runner django-q`` reads the files.

Read-only: no connection is opened, closed, reset or returned by any of this.
"""

from __future__ import annotations

import functools
import socket
from typing import Any

from pooldoctor.hosts.django_q import first_receiver, task_label
from pooldoctor.hosts.live import TIMELINE, Installation

RUNNER = "django-q"
_INSTALLED: list[Installation] = []


def install(*, alias: str = "default", tracking: bool = True, timeline: int = TIMELINE) -> None:
    """Make this project's django-q clusters keep a census of ``alias``'s connections for
    ``pooldoctor inspect --runner django-q``. ``tracking`` captures each checkout's stack (for
    leak sites); ``timeline``: how many of the latest checkouts each snapshot keeps (0: none).
    Calling it again changes nothing."""
    if _INSTALLED:
        return
    from django_q import cluster, signals

    if not hasattr(signals, "post_execute_in_worker"):
        raise RuntimeError("pooldoctor.django_q.install() needs django-q2 >= 1.10 (its "
                           "post_execute_in_worker signal)")  # fmt: skip
    inst = Installation(alias, tracking, timeline)
    _INSTALLED.append(inst)
    spawn_cluster, stop = cluster.Sentinel.spawn_cluster, cluster.Sentinel.stop

    @functools.wraps(spawn_cluster)
    def spawn_and_census(self: Any) -> Any:
        from django_q.conf import Conf

        # The sentinel, before it forks the workers: the node.
        hostname = f"{Conf.CLUSTER_NAME}-{self.pid}@{socket.gethostname()}"
        inst.start_node(hostname, "cluster", int(self.pool_size), forks=True, runner=RUNNER)
        return spawn_cluster(self)

    @functools.wraps(stop)
    def stop_and_forget(self: Any) -> Any:
        try:
            return stop(self)  # returns once its workers have exited
        finally:
            inst.on_worker_shutdown()

    cluster.Sentinel.spawn_cluster = spawn_and_census
    cluster.Sentinel.stop = stop_and_forget

    def spawned(sender: Any, **kwargs: Any) -> None:
        if inst.hostname is not None:
            inst.start_process(forked=True)

    def started(sender: Any, func: Any = None, task: Any = None, **kwargs: Any) -> None:
        inst.task_started(str(task["id"]), task_label(func, task))

    def finished(sender: Any, func: Any = None, task: Any = None, **kwargs: Any) -> None:
        inst.task_finished(str(task["id"]), "SUCCESS" if task.get("success") else "FAILURE")

    signals.post_spawn.connect(spawned, weak=False, dispatch_uid="pooldoctor.census")
    first_receiver(signals.post_spawn)
    signals.pre_execute.connect(started, weak=False, dispatch_uid="pooldoctor.census")
    first_receiver(signals.pre_execute)
    signals.post_execute_in_worker.connect(finished, weak=False, dispatch_uid="pooldoctor.census")
