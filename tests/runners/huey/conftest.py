"""Fixtures for the Huey runner's tests: a database of their own, Redis DB 5, the project
tests/projects/hueyproj, and the run's leftovers (processes, sessions, keys) looked for after."""

from __future__ import annotations

from conftest import PROJECTS

from ..fleets import Fleet

HUEYPROJ = PROJECTS / "hueyproj"
REDIS = "redis://127.0.0.1:6379/5"
"""The Huey tests' own Redis database (RQ's use 3, Dramatiq's 4, django-q's 6)."""
FLEET = Fleet("huey", HUEYPROJ, "hueyproj.settings", REDIS, "POOLDOCTOR_HUEY_TEST",
              run_keys="huey.*pooldoctor*", options=("--tasks", "6", "--workers", "2"))  # fmt: skip
SETTINGS = FLEET.settings_args
simulate = FLEET.simulate
huey_database_url, redis_url = FLEET.fixtures()
