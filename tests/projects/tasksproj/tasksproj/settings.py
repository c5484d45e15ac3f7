"""A project whose background work is Django's Tasks, queued in its database (django-tasks-db)
and run by ``manage.py db_worker``: ``pooldoctor check --task`` and ``simulate --runner
django-tasks``. TASKSPROJ_INSTALL=1 installs pooldoctor's live census in its workers;
TASKSPROJ_IMMEDIATE=1 makes the default backend Django's ImmediateBackend (the backport's on
Django 5.x); TASKSPROJ_SIGNALS_LOG=PATH appends the sender of every task_started to PATH."""

import os

import django

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_db", "tasksproj"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("TASKSPROJ_DB", "postgres"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 30}},
    }
}
# One queue per live worker of the inspect test (a backend accepts only the queues it lists).
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "leaky", "clean"],
    }
}
if os.environ.get("TASKSPROJ_IMMEDIATE") == "1":
    FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    TASKS = {"default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}}
