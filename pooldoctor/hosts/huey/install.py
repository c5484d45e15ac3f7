"""The worker side of ``pooldoctor inspect --runner huey``: one line where the project's Huey
instance is at hand (its ``tasks.py``, or wherever it imports djhuey)::

    from huey.contrib.djhuey import HUEY
    import pooldoctor.huey
    pooldoctor.huey.install(HUEY)

Nothing happens until a consumer starts: a web process that imports the module only enqueues.
The consumer's main process (``run_huey`` or ``huey_consumer``, both build it with
``huey.create_consumer()``) starts the node (``<tempdir>/pooldoctor-inspect/<node>/node.json``:
its kind of worker and how many); every process that runs tasks (each ``process`` worker, or the
consumer itself for ``thread`` and ``greenlet``) keeps a :class:`pooldoctor.core.census.Ledger`,
labels each task ``name[task id]`` around its run (``SIGNAL_EXECUTING`` to ``SIGNAL_COMPLETE``,
or the last post-execute hook for a failed task: after djhuey's ``close_db``) and writes its
snapshot after each task. ``pooldoctor inspect --runner huey`` reads the files.

Read-only: no connection is opened, closed, reset or returned by any of this.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from pooldoctor.hosts.live import TIMELINE, Installation

_INSTALLED: dict[int, Installation] = {}
"""By ``id(huey)``: the instances :func:`install` was called for in this process."""


def install(huey: Any, *, alias: str = "default", tracking: bool = True,
            timeline: int = TIMELINE) -> None:  # fmt: skip
    """Make ``huey``'s consumers keep a census of ``alias``'s connections for ``pooldoctor
    inspect --runner huey``. ``tracking`` captures each checkout's stack (for leak sites);
    ``timeline``: how many of the latest checkouts each snapshot keeps (0: none). Calling it
    again for the same instance changes nothing."""
    if id(huey) in _INSTALLED:
        return
    installation = Installation(alias, tracking, timeline)
    _INSTALLED[id(huey)] = installation
    _Hooks(huey, installation).connect()


class _Hooks:
    """Huey's own hooks, for one instance."""

    def __init__(self, huey: Any, installation: Installation) -> None:
        self.huey = huey
        self.installation = installation
        self.lock = threading.Lock()
        self.ready: set[int] = set()
        """The pids whose hooks are in place (``on_startup`` runs once per worker thread)."""

    def connect(self) -> None:
        from huey import signals

        create = self.huey.create_consumer

        def create_consumer(**options: Any) -> Any:
            """Only consumers call it: the node starts in their main process, before any fork."""
            consumer = create(**options)
            self.start_node(consumer)
            run = consumer.run

            def run_then_stop() -> None:
                try:
                    run()
                finally:
                    self.installation.on_worker_shutdown()

            consumer.run = run_then_stop
            return consumer

        self.huey.create_consumer = create_consumer
        # First of the start-up hooks (a dict, in registration order): a forked worker is seen
        # as forked, before the project's own hooks.
        self.huey._startup = {"pooldoctor": self.on_startup, **self.huey._startup}
        self.huey.on_shutdown(name="pooldoctor")(self.on_shutdown)
        self.huey.signal(signals.SIGNAL_EXECUTING)(self.executing)

    def start_node(self, consumer: Any) -> None:
        inst = self.installation
        hostname = f"{self.huey.name}-{os.getpid()}@{socket.gethostname()}"
        forks = consumer.worker_type == "process"  # multiprocessing's workers (fork on Linux)
        inst.start_node(hostname, str(consumer.worker_type), int(consumer.workers), forks=forks,
                        runner="huey")  # fmt: skip

    def on_startup(self) -> None:
        inst = self.installation
        with self.lock:
            if inst.hostname is None or os.getpid() in self.ready:
                return
            self.ready.add(os.getpid())
            if inst.forks and os.getpid() != inst.main_pid:
                inst.start_process(forked=True)
            # Registered now, after the project's hooks (its tasks modules are loaded): they
            # run last, once djhuey's close_db and the project's clean-up are done.
            self.huey.post_execute(name="pooldoctor")(self.post_execute)
            self.huey.signal()(self.finished)  # "any": after the receivers of each signal

    def on_shutdown(self) -> None:
        if self.installation.forks and os.getpid() != self.installation.main_pid:
            self.installation.on_process_shutdown()

    def executing(self, signal: str, task: Any, *args: Any) -> None:
        self.installation.task_started(task.id, self.huey._registry.task_to_string(type(task)))

    def post_execute(self, task: Any, value: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self.installation.task_finished(task.id, "FAILURE")

    def finished(self, signal: str, task: Any, *args: Any) -> None:
        from huey import signals

        if signal == signals.SIGNAL_COMPLETE:
            self.installation.task_finished(task.id, "SUCCESS")
        elif signal == signals.SIGNAL_INTERRUPTED:
            self.installation.task_finished(task.id, "FAILURE")
