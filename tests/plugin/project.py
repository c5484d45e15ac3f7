"""A small Django project for the pytest plugin's tests, run by ``pytester`` in a subprocess.

The project's settings point at the suite's PostgreSQL (a pool of 4 slots, 2 s timeout) with two
aliases, ``default`` and ``other`` (a test mirror of ``default`` with its own pool), and one
unmanaged model over ``pg_database``: no migration, no writes. pytest-django creates the test
database ``test_<NAME>`` once per session (``--reuse-db``; NAME is unique to the session, so
parallel runs do not collide) and it is dropped at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "pooldoctor-plugin-tests"
INSTALLED_APPS = ["probeapp"]
USE_TZ = True
_DATABASE = {{
    "ENGINE": "django.db.backends.postgresql",
    "HOST": {host!r},
    "PORT": {port!r},
    "USER": {user!r},
    "PASSWORD": {password!r},
    "NAME": {name!r},
    "OPTIONS": {{"pool": {{"min_size": 0, "max_size": 4, "timeout": 2}}}},
}}
DATABASES = {{
    "default": _DATABASE,
    "other": {{**_DATABASE, "TEST": {{"MIRROR": "default"}}}},
}}
"""

MODELS = """
from django.db import models


class Database(models.Model):
    datname = models.CharField(max_length=64, primary_key=True)

    class Meta:
        managed = False
        db_table = "pg_database"
"""

INI = """
[pytest]
DJANGO_SETTINGS_MODULE = settings
pythonpath = .
addopts = --reuse-db --strict-markers
asyncio_default_fixture_loop_scope = function
"""

# The recipe a test module starts with: the widely shared per-task ThreadSensitiveContext
# (loses its connection), the same closing on the context's own thread, and a plain asyncio.run
# (the ORM runs on asgiref's process-wide executor, which keeps its connection).
RECIPES = """
import asyncio

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.db import close_old_connections

from probeapp.models import Database


async def count_in_context(using="default"):
    async with ThreadSensitiveContext():
        return await Database.objects.using(using).acount()  # leaks


async def count_and_close():
    async with ThreadSensitiveContext():
        try:
            return await Database.objects.acount()
        finally:
            await sync_to_async(close_old_connections)()
"""


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in a fresh process (Django is set up once per process), as a user runs it."""
    return project.runpytest_subprocess(*args, timeout=120)


def line_of(path: Path, text: str) -> int:
    """The number of the only line of ``path`` that contains ``text``."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(found) == 1, f"{text!r} is on lines {found} of {path}"
    return found[0]
