"""The built-in modes: ways of running ORM code outside a request, and on the request path.

Each module in this package reproduces one real way teams run async Django code from sync code
(Celery tasks, scripts, management commands), or one kind of view a request reaches (a *request
mode*: the probe as a sync, async, thread-insensitive or streaming view, sent through the
project's own ASGI or WSGI application), and registers itself with :func:`register`. A mode is
only a way of *running* the probe task; what it does to the pool is measured, never declared here.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Collection
from typing import Any

from pooldoctor.core.probes.task import AsyncTask

SyncTask = Callable[[str], Any]


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    order: int
    """Position in listings and reports."""
    wrap: Callable[[AsyncTask], SyncTask]
    """Turn the probe coroutine function into a sync callable, the way this mode does."""
    doc: str
    thread_sensitive: bool = True
    """False when the mode's ORM calls go through ``sync_to_async(thread_sensitive=False)``."""
    unavailable: Callable[[], str | None] = lambda: None
    """Why this mode cannot run with the installed packages, or None."""
    fix: str | None = None
    """Code a project can copy when this mode measures clean (recommended in that order)."""
    sync: bool = False
    """The mode runs sync ORM code (the sync probe), not a coroutine."""
    worker_only: bool = False
    """Measured by default only on real workers (simulate): in process it says nothing new."""
    request: bool = False
    """A view: :meth:`task` returns a Django view, measured by sending requests to it through
    the project's application (:mod:`pooldoctor.core.probes.views`)."""

    def task(self, alias: str) -> SyncTask:
        """The probe, run the way this mode runs it: what a subject calls once per task (for a
        request mode, the view a request reaches)."""
        from pooldoctor.core.probes.task import make_probe_task, make_sync_probe_task

        if self.sync:
            return self.wrap(make_sync_probe_task(alias))  # type: ignore[arg-type]
        return self.wrap(make_probe_task(alias, thread_sensitive=self.thread_sensitive))

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0].rstrip(".")


_MODES: dict[str, Mode] = {}
_NOT_MODES = frozenset({"task", "views"})  # the probe itself, and what the request modes share


def register(
    module_name: str,
    order: int,
    *,
    thread_sensitive: bool = True,
    unavailable: Callable[[], str | None] | None = None,
    fix: str | None = None,
    sync: bool = False,
    worker_only: bool = False,
    request: bool = False,
) -> Callable[[Callable[[AsyncTask], SyncTask]], Callable[[AsyncTask], SyncTask]]:
    """Register the decorated ``wrap`` function as the mode named after its module."""

    def decorator(wrap: Callable[[AsyncTask], SyncTask]) -> Callable[[AsyncTask], SyncTask]:
        module = importlib.import_module(module_name)
        name = module_name.rsplit(".", 1)[1].replace("_", "-")
        _MODES[name] = Mode(
            name=name,
            order=order,
            wrap=wrap,
            doc=module.__doc__ or name,
            thread_sensitive=thread_sensitive,
            unavailable=unavailable or (lambda: None),
            fix=fix,
            sync=sync,
            worker_only=worker_only,
            request=request,
        )
        return wrap

    return decorator


def all_modes() -> list[Mode]:
    """Every built-in mode, in report order."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_MODES:
            importlib.import_module(f"{__name__}.{info.name}")
    return sorted(_MODES.values(), key=lambda m: m.order)


def clean_pattern(clean: Collection[str]) -> Mode | None:
    """The mode with code to copy that measured clean (its name in ``clean``), in report order:
    the most Django-like first. None when no such mode measured clean."""
    return next((m for m in all_modes() if m.fix and m.name in clean), None)


def get_mode(name: str) -> Mode:
    modes = {m.name: m for m in all_modes()}
    return modes[name]
