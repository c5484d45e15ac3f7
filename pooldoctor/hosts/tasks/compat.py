"""Django's Tasks framework where it is: ``django.tasks`` from Django 6.0, else the
``django-tasks`` backport, whose signals django-tasks-db before 0.13 sends even on Django 6."""

from __future__ import annotations

import importlib.util
from typing import Any

if importlib.util.find_spec("django.tasks") is not None:
    from django.tasks import task, task_backends
else:  # pragma: no cover - Django < 6.0 (CI's lowest environment)
    from django_tasks import task, task_backends  # type: ignore[no-redef,unused-ignore]


def worker_signals() -> Any:
    """The module whose task_started/task_finished django-tasks-db's workers send."""
    try:
        from django_tasks_db import compat

        if hasattr(compat, "task_started"):
            return compat
    except ImportError:
        pass
    import django_tasks.signals

    return django_tasks.signals


__all__ = ["task", "task_backends", "worker_signals"]
