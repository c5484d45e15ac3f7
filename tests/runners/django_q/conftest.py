"""Fixtures for the django-q tests: a database of their own, Redis DB 6, the project
tests/projects/djangoqproj, and what a run left behind (processes, sessions, keys)."""

from __future__ import annotations

from conftest import PROJECTS

from ..fleets import Fleet

DJANGOQPROJ = PROJECTS / "djangoqproj"
REDIS = "redis://127.0.0.1:6379/6"
"""The django-q tests' own Redis database (RQ's use 3, Dramatiq's 4, Huey's 5)."""
FLEET = Fleet("django-q", DJANGOQPROJ, "djangoqproj.settings", REDIS, "POOLDOCTOR_DJANGO_Q_TEST",
              run_keys="django_q:pooldoctor-*",
              options=("--tasks", "6", "--workers", "2"))  # fmt: skip
SETTINGS = FLEET.settings_args
simulate = FLEET.simulate
django_q_database_url, redis_url = FLEET.fixtures()
