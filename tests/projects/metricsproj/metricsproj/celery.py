"""The project's Celery app with pooldoctor's metrics: METRICSPROJ_PORT and METRICSPROJ_TEXTFILE
are install()'s metrics options."""

import os

from celery import Celery

import pooldoctor.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metricsproj.settings")

app = Celery("metricsproj", include=["metricsproj.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")

_port = os.environ.get("METRICSPROJ_PORT")
pooldoctor.celery.install(
    app,
    metrics_port=int(_port) if _port else None,
    metrics_addr="127.0.0.1",
    metrics_textfile=os.environ.get("METRICSPROJ_TEXTFILE") or None,
)
