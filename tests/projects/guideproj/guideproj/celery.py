"""The project's Celery app, as Celery's Django guide writes it.

With GUIDEPROJ_DISCARD_POOL=1 it also connects a worker_process_init handler that discards the
pool each prefork child inherited from the parent.
"""

import contextlib
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guideproj.settings")

app = Celery("guideproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if os.environ.get("GUIDEPROJ_DISCARD_POOL") == "1":

    @worker_process_init.connect
    def discard_inherited_pool(**kwargs: Any) -> None:
        from django.db import connections

        for alias in connections:
            with contextlib.suppress(AttributeError, KeyError):  # not PostgreSQL, or no pool
                connections[alias].close_pool()
