"""Fixtures for RQ's tests: tests/projects/rqproj on real Redis (database 3) and PostgreSQL.

Each simulate run goes through the real CLI; while it runs, the worker processes it started (its
``rqworker`` processes and their work horses, carrying a marker in their environment) are
recorded, and after it whatever of them, of pooldoctor's sessions and of the Redis keys the run
made is still there (after a bounded wait) is what it left behind.
"""

from __future__ import annotations

import os
from typing import Any

from conftest import PROJECTS

from ..fleets import Fleet

RQPROJ = PROJECTS / "rqproj"
REDIS = "redis://127.0.0.1:6379/3"
FLEET = Fleet("rq", RQPROJ, "rqproj.settings", REDIS, "POOLDOCTOR_RQ_TEST_RUN",
              needle="pooldoctor.hosts.rq.worker", options=("--broker", REDIS))  # fmt: skip
SETTINGS = FLEET.settings_args
simulate = FLEET.simulate
rq_database_url, redis_url = FLEET.fixtures()


def redis_client() -> Any:
    from redis import Redis

    return Redis.from_url(REDIS, socket_connect_timeout=3, socket_timeout=3)


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "RQPROJ_REDIS": REDIS, **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env
