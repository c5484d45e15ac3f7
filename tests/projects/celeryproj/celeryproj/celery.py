"""The project's Celery app, as ``django-admin startproject`` guides write it.

With CELERYPROJ_DISCARD_POOL=1 it also connects the project's worker_process_init handler
(:mod:`celeryproj.handlers`), the way a project enables it by importing the module.
"""

import os

from celery import Celery

app = Celery("celeryproj")
app.config_from_object("django.conf:settings", namespace="CELERY")

if os.environ.get("CELERYPROJ_DISCARD_POOL") == "1":
    from celeryproj import handlers  # noqa: F401  (connects the handler)
