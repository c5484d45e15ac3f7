"""A project laid out as Celery's "First steps with Django" guide says: this package imports its
Celery app, so that the app exists (with its Django fix-up) whenever the settings are loaded."""

from .celery import app as celery_app

__all__ = ("celery_app",)
