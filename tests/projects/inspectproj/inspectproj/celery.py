"""The project's Celery app, with pooldoctor's worker side installed (one line).

INSPECTPROJ_NO_INSTALL=1 leaves it out: a worker of the same project that cannot answer
``pooldoctor_census``.
"""

import os

from celery import Celery

import pooldoctor.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inspectproj.settings")

app = Celery("inspectproj", include=["inspectproj.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")

if os.environ.get("INSPECTPROJ_NO_INSTALL") != "1":
    pooldoctor.celery.install(app)
