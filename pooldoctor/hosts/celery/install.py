"""The worker side of ``pooldoctor inspect``: one line in the project's Celery module.

    import pooldoctor.celery
    pooldoctor.celery.install(app)

Nothing happens until a worker starts: the module that calls :func:`install` is imported by web
processes too, and they are left alone. In a worker, every process that runs tasks (each prefork
child, or the worker itself for the solo, threads, gevent and eventlet pools) keeps a
:class:`pooldoctor.core.census.Ledger` of the alias's connections, labels each task
``name[task id]``
around its run, and after each task writes its snapshot to
``<tempdir>/pooldoctor-inspect/<node name>/<pid>.json`` (written whole, then renamed). The
remote-control inspect command ``pooldoctor_census`` answers from those files, in the worker's main
process, without touching any connection: ``app.control.broadcast("pooldoctor_census",
reply=True)``.

Read-only: no connection is opened, closed, reset or returned by any of this; the ledger only
watches Django's ``connection_created`` signal and the pool's ``putconn``. No ``gc.collect()``
either: a connection still alive but left checked out by a thread that ended counts as lost
already, so a snapshot never waits for the collector.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from pooldoctor.hosts.live import TIMELINE, Installation, node_directory, snapshot_root

__all__ = ["Installation", "node_directory", "snapshot_root"]

COMMAND = "pooldoctor_census"


_INSTALLED: dict[int, Installation] = {}
"""By ``id(app)``: the apps :func:`install` was called for in this process."""
_ACTIVE: Installation | None = None
"""The one whose worker runs in this process (set at worker_init, inherited by the children)."""


def install(
    app: Any,
    *,
    alias: str = "default",
    tracking: bool = True,
    timeline: int = TIMELINE,
    metrics_port: int | None = None,
    metrics_addr: str = "0.0.0.0",
    metrics_textfile: str | os.PathLike[str] | None = None,
) -> None:
    """Make ``app``'s workers keep a census of ``alias``'s connections and answer
    ``pooldoctor_census``. ``tracking`` captures each checkout's stack (for leak sites);
    without it only counts are kept. ``timeline``: how many of the latest checkouts each
    snapshot keeps for the HTML report's timeline (0: none). Calling it again for the same app
    changes nothing.

    ``metrics_port``: the worker's main process serves the census as Prometheus metrics on
    ``http://metrics_addr:metrics_port/metrics`` (0: any free port, logged);
    ``metrics_textfile``: it keeps that file (``*.prom``, for node_exporter's textfile collector)
    up to date instead, or as well. Both need prometheus-client (``pip install
    'pooldoctor[metrics]'``)."""
    if id(app) in _INSTALLED:
        return
    installation = Installation(alias, tracking, timeline)
    if metrics_port is not None or metrics_textfile is not None:
        from pooldoctor.hosts.celery import metrics

        installation.metrics = metrics.Exporter(
            installation, port=metrics_port, addr=metrics_addr, textfile=metrics_textfile
        )
    _INSTALLED[id(app)] = installation
    _connect_signals()


def metrics_collector(app: Any) -> Any:
    """A prometheus-client collector of ``app``'s worker node's census, to register in a registry
    the project already serves (``registry.register(pooldoctor.celery.metrics_collector(app))``):
    it reports the node whose worker runs in this process, nothing elsewhere."""
    found = _INSTALLED.get(id(app))
    if found is None:
        raise LookupError("call pooldoctor.celery.install(app) before metrics_collector(app)")
    from pooldoctor.hosts.celery import metrics

    return metrics.NodeCollector(found)


def pool_kind(pool_cls: Any) -> str:
    """prefork, solo, threads, gevent, eventlet... from the worker's pool class (or its name)."""
    name = pool_cls if isinstance(pool_cls, str) else getattr(pool_cls, "__module__", "")
    last = str(name).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    return {"thread": "threads", "processes": "prefork"}.get(last, last)


# --- signals -----------------------------------------------------------------------------------

_CONNECTED = False


def _connect_signals() -> None:
    global _CONNECTED
    if _CONNECTED:
        return
    from celery import signals

    signals.worker_init.connect(_on_worker_init, weak=False)
    # Connected now, at import of the project's Celery module, so that it runs before the Django
    # fix-up's worker_process_init handler: the child is seen as forked, pool and all.
    signals.worker_process_init.connect(_on_worker_process_init, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    _CONNECTED = True


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    global _ACTIVE
    found = _INSTALLED.get(id(getattr(sender, "app", None)))
    if found is None:
        return
    _ACTIVE = found
    # Registered here, not at install(): a web process importing the Celery module never loads
    # celery.worker; the pidbox that dispatches it starts after worker_init.
    _register_command()
    found.start_node(str(sender.hostname), pool_kind(sender.pool_cls),
                     int(sender.concurrency or 0), forks=None, worker=sender)  # fmt: skip
    from celery import signals

    # Connected here so that they run after the fix-up's own (connected by then): the snapshot
    # sees the connections as the fix-up's cleanup left them.
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)


def _on_worker_process_init(**kwargs: Any) -> None:
    if _ACTIVE is not None and _ACTIVE.forks:
        _ACTIVE.start_process(forked=True)


def _on_task_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.task_started(task_id, str(getattr(task, "name", "task")))


def _on_task_postrun(task_id: str = "", state: str | None = None, **kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.task_finished(task_id, state)


def _on_worker_process_shutdown(**kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.on_process_shutdown()


def _on_worker_shutdown(**kwargs: Any) -> None:
    if _ACTIVE is not None:
        _ACTIVE.on_worker_shutdown()


def _register_command() -> None:
    from celery.worker.control import Panel, inspect_command

    if COMMAND in Panel.data:
        return

    @inspect_command(name=COMMAND)
    def pooldoctor_census(state: Any, **kwargs: Any) -> dict[str, Any]:
        """pooldoctor's census of this worker's processes (pooldoctor inspect)."""
        found = _INSTALLED.get(id(getattr(state, "app", None))) or _ACTIVE
        if found is None:
            return {"error": "pooldoctor.celery.install() was not called for this app"}
        return found.reply(_pool_pids(state))


def _pool_pids(state: Any) -> set[int] | None:
    """The pids of the worker pool's processes, when the pool says (prefork does)."""
    with contextlib.suppress(Exception):
        info = state.consumer.pool.info
        pids = info.get("processes") if isinstance(info, dict) else None
        if pids:
            return {int(pid) for pid in pids}
    return None
