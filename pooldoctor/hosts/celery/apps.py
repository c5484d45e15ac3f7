"""Finding the project's own Celery app, as Celery's Django guide lays a project out: the
settings' package has a ``celery`` module that creates the app, and the package imports it so that
the app (with its Django fix-up) exists whenever the settings are loaded. And how its signal
receivers are named in reports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

LIBRARIES = ("celery", "kombu", "billiard", "pooldoctor", "django", "__main__")


def locate_app(settings: str) -> str | None:
    """Where the loaded project's Celery app lives, cheaply (no process, Celery not imported if
    the project did not import it): ``<package>.celery`` when the settings' package has one, as
    Celery's Django guide lays a project out; else ``module:attr`` of an app the project's import
    (its settings, a ``--wrapper``) already created. None: no app, nothing to fork."""
    for package in _packages(settings):
        if _find_spec(f"{package}.celery"):
            return f"{package}.celery"
    if "celery" not in sys.modules:
        return None
    from celery import _state

    for app in _state._get_active_apps():
        if not _ours(app):
            return _where(app) or str(app.main)
    return None


def find_app(settings: str, hint: str = "") -> tuple[Any, str]:
    """The project's Celery app and where it lives (``module:attr``): in the module the parent
    named, else as Celery's Django guide lays a project out (``<package>/celery.py`` defines it
    and the package imports it), else the app the settings' import created. ``(None, "")`` when
    there is none."""
    from celery import Celery, _state

    module_name, _, attr = hint.partition(":")
    names = [module_name] if module_name else []
    for name in [*names, *(f"{package}.celery" for package in _packages(settings))]:
        if not _find_spec(name):
            continue
        module = importlib.import_module(name)
        found = [(a, v) for a, v in vars(module).items() if isinstance(v, Celery) and not _ours(v)]
        found.sort(key=lambda item: item[0] != attr)
        if found:
            return found[0][1], f"{name}:{found[0][0]}"
    apps = [a for a in _state._get_active_apps() if not _ours(a)]
    apps.sort(key=lambda a: not any(type(f).__name__ == "DjangoFixup" for f in a._fixups or ()))
    return (apps[0], _where(apps[0]) or str(apps[0].main)) if apps else (None, "")


def _where(app: Any) -> str | None:
    """``module:attr`` of a project module that holds ``app``."""
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.startswith(LIBRARIES):
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                return f"{module_name}:{attr}"
    return None


def _packages(settings: str) -> list[str]:
    """``a.b.settings`` -> ``a.b``, ``a``: where a guide-style ``celery`` module would be."""
    parts = settings.split(".")[:-1]
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _find_spec(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _ours(app: Any) -> bool:
    return str(getattr(app, "main", "") or "").startswith("pooldoctor")


def receiver_name(receiver: Any) -> str:
    """A signal receiver as ``module.function`` (a bound method as ``module.Class.method``)."""
    func = getattr(receiver, "__func__", receiver)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"
