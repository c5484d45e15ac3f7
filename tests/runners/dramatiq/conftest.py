"""The Dramatiq host's tests run real ``dramatiq`` workers on a real Redis (database 4) and a
PostgreSQL database of their own; whatever they start, they check is gone."""

from __future__ import annotations

from conftest import PROJECTS

from ..fleets import Fleet

DRAMATIQPROJ = PROJECTS / "dramatiqproj"
REDIS = "redis://127.0.0.1:6379/4"
FLEET = Fleet("dramatiq", DRAMATIQPROJ, "dramatiqproj.settings", REDIS, "POOLDOCTOR_DRAMATIQ_TEST",
              run_keys="pooldoctor-*", needle="pooldoctor.hosts.dramatiq.worker",
              options=("--workers", "2", "--tasks", "6", "--broker", REDIS))  # fmt: skip
"""Every key of a run is under its queue's name (pooldoctor-<run>-<n>)."""
SETTINGS = FLEET.settings_args
simulate = FLEET.simulate
dramatiq_database_url, redis_url = FLEET.fixtures()
