"""The module a real ``celery worker`` loads (``-A pooldoctor.hosts.celery.worker``).

It loads the project's own Celery app (its signal handlers, its Django fix-up, the installed
Celery's behaviour), points it at pooldoctor's broker, registers the probe task through the
subject (a mode or the project's wrapper) and writes one record per task, from the worker process
that ran it, after every other ``task_postrun`` handler (Celery's Django fix-up included) ran.
Each task is labelled for the ledger (``name[task id]``) on the thread that runs it, and every
census also rewrites the process's leak sites (``sites/<pid>.json``): one file per worker process,
holding where its lost and pinned connections were checked out as of its latest census.

Nothing here runs outside a worker started by :mod:`pooldoctor.hosts.celery.fleet`; the spec comes
from the file named by ``POOLDOCTOR_SIMULATE``.
"""

from __future__ import annotations

from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.hosts import get_host
from pooldoctor.hosts.celery.apps import find_app
from pooldoctor.hosts.celery.fleet import purge_queue
from pooldoctor.hosts.probe_worker import PROBE_NAME, ProbeWorker, resolve

WORKER = ProbeWorker()
SPEC = WORKER.spec
# Before anything of the project's runs: if pooldoctor dies, delete this run's queue on the user's
# broker, then end this worker and its prefork children.
lifeline.arm(on_death=lambda: purge_queue(SPEC["celery_conf"]))


def _on_child_start(forked: bool = True, **kwargs: Any) -> None:
    """Runs first in every prefork child, before the project's own handlers: what came from the
    parent? (Also run once in the worker itself for pools that do not fork.)"""
    WORKER.process_started(forked=forked)


def _on_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    WORKER.task_started(task_id, getattr(task, "name", PROBE_NAME))


def _on_postrun(task_id: str = "", args: Any = (), state: str = "", retval: Any = None,
                **kwargs: Any) -> None:  # fmt: skip
    error = retval if isinstance(retval, BaseException) else None
    WORKER.task_finished(task_id, error=error, retval=retval, state=state)


def _load_app() -> tuple[Any, str]:
    """The Celery app the worker runs, and how it was found: ``--app``, else the project's own
    (the one its settings package imports, as Celery's Django guide lays a project out, or its
    ``celery`` module), else one built from the settings' ``CELERY_*``."""
    from celery import Celery

    if SPEC["app"]:
        found = resolve(SPEC["app"])
        if not isinstance(found, Celery):
            raise SystemExit(f"--app {SPEC['app']} is a {type(found).__name__}, not a Celery app")
        return found, f"--app {SPEC['app']}"
    project_app, where = find_app(WORKER.project.settings)
    if project_app is not None:
        return project_app, f"the project's app {where}"
    app = Celery("pooldoctor")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app, "none found in the project: one built from the settings' CELERY_*"


def _set_fixup(app: Any, mode: str) -> bool:
    """Django fix-up on, off, or as the app's creation left it; returns whether it is on."""
    from celery import signals

    fixups = [f for f in getattr(app, "_fixups", []) if type(f).__name__ == "DjangoFixup"]
    if mode == "on" and not fixups:
        from celery.fixups.django import DjangoFixup

        app._fixups.append(DjangoFixup(app).install())
        return True
    if mode == "off":
        for fixup in fixups:
            signals.import_modules.disconnect(fixup.on_import_modules, sender=app)
            signals.worker_init.disconnect(dispatch_uid=getattr(fixup, "_worker_init_uid", None))
            signals.worker_init.disconnect(fixup.on_worker_init)
            app._fixups.remove(fixup)
        return False
    return bool(fixups) or mode == "on"


def _bootstrap() -> Any:
    from celery import signals

    WORKER.configure()
    # Ours first: it must see the child exactly as forked, before the project's handlers.
    signals.worker_process_init.connect(_on_child_start, weak=False)
    app, found = _load_app()
    fixup = _set_fixup(app, SPEC["django_fixup"])
    conf = dict(SPEC["celery_conf"])
    namespace = getattr(app, "namespace", None)
    if namespace:
        # With config_from_object(namespace="CELERY") a CELERY_BROKER_URL setting outranks
        # broker_url (Celery 5.5): set both spellings.
        conf.update({f"{namespace}_{key.upper()}": value for key, value in conf.items()})
    app.conf.update(conf)
    WORKER.setup()
    run = WORKER.subject_task()
    host = get_host("celery")
    if host.owns(run) and run.name in app.tasks:
        name = run.name  # the project's task, registered in the app the worker runs
    else:
        name = PROBE_NAME
        app.task(name=PROBE_NAME, ignore_result=True)(run)

    def on_worker_init(**kwargs: Any) -> None:
        # Connected now, so that they run after the fix-up's handlers (installed at worker_init).
        signals.task_prerun.connect(_on_prerun, weak=False)
        signals.task_postrun.connect(_on_postrun, weak=False)
        if SPEC["pool"] != "prefork":
            _on_child_start(forked=False)  # threads, solo, gevent: tasks run in this process

    def on_ready(**kwargs: Any) -> None:
        facts = host.facts(app)
        info = {"task": name, "celery": facts.version, "django_fixup": fixup, "app": found,
                "signal_handlers": list(facts.handlers),
                "django_integration": facts.django}  # fmt: skip
        WORKER.ready(info)

    def discard_inherited_pool(**kwargs: Any) -> None:
        WORKER.discard_inherited_pool()

    signals.worker_init.connect(on_worker_init, weak=False)
    if SPEC.get("apply_fix"):
        signals.worker_process_init.connect(discard_inherited_pool, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    if SPEC["warm_parent"]:
        WORKER.warm_parent()
    return app


app = _bootstrap()
