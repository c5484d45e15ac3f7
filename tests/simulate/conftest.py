"""The simulations the tests look at, each run once per session (a run is a real worker fleet).

They all connect to a database created for this session, so that the sessions on it are theirs
alone, whatever else runs on the same server.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from conftest import scratch_database

from .sim import (
    CELERYPROJ,
    FIXED,
    LEAKY,
    RECIPE,
    RECIPE_TASK,
    SMALL,
    Sim,
    simulate,
)

REDIS = "redis://127.0.0.1:6379/15"
PROJECT_APP = ("--settings", "celeryproj.settings", "--app", "celeryproj.celery:app")


@pytest.fixture(scope="session")
def sim_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_simulate") as url:
        yield url


@pytest.fixture(scope="session")
def leaky_prefork(sim_database_url: str) -> Sim:
    """The blog recipe and async-to-sync on prefork, parent not warmed."""
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE,
                    "--modes", "async-to-sync", "--pool", "prefork", *SMALL, cwd=LEAKY)  # fmt: skip


@pytest.fixture(scope="session")
def fixed_prefork(sim_database_url: str) -> Sim:
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE,
                    "--modes", "async-to-sync", "--pool", "prefork", *SMALL, cwd=FIXED)  # fmt: skip


@pytest.fixture(scope="session")
def leaky_threads(sim_database_url: str) -> Sim:
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE_TASK,
                    "--modes", "async-to-sync", "--pool", "threads", *SMALL, cwd=LEAKY)  # fmt: skip


@pytest.fixture(scope="session")
def fixed_threads(sim_database_url: str) -> Sim:
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE_TASK,
                    "--modes", "async-to-sync", "--pool", "threads", *SMALL, cwd=FIXED)  # fmt: skip


def _warm_parent(database_url: str, discard: bool) -> Sim:
    # A short task timeout: on Celery < 5.6 a reply that went to another process can leave a task
    # waiting for ever, and the watchdog reports it after this.
    return simulate(database_url, *PROJECT_APP, "--prefork", "--modes", "async-to-sync", *SMALL,
                    "--task-timeout", "3", cwd=CELERYPROJ,
                    env={"CELERYPROJ_DISCARD_POOL": "1" if discard else "0"})  # fmt: skip


@pytest.fixture(scope="session")
def warm_parent(sim_database_url: str) -> Sim:
    """The project's own app, the parent queried before the fork, no handler of the project's."""
    return _warm_parent(sim_database_url, discard=False)


@pytest.fixture(scope="session")
def warm_parent_discarding(sim_database_url: str) -> Sim:
    """The same, with the project's worker_process_init handler discarding the pool."""
    return _warm_parent(sim_database_url, discard=True)


@pytest.fixture(scope="session")
def killed_child(sim_database_url: str) -> Sim:
    # The fleet waits for task-timeout + 5 s of silence for the lost task: keep it short.
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE,
                    "--modes", "async-to-sync", "--pool", "prefork", *SMALL,
                    "--kill-child-at", "3", "--task-timeout", "2", cwd=FIXED)  # fmt: skip


@pytest.fixture(scope="session")
def redis_broker() -> str:
    """Redis must be there (CI starts it): an unreachable one fails the tests, never skips them."""
    parts = urlsplit(REDIS)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=3) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS} ({exc}): start redis-server on "
                    "127.0.0.1:6379 (.ci/run does)", pytrace=False)  # fmt: skip
    if not answer.startswith(b"+PONG"):
        pytest.fail(f"{REDIS} did not answer PING like Redis: {answer!r}", pytrace=False)
    return REDIS


@pytest.fixture(scope="session")
def redis_fleet(sim_database_url: str, redis_broker: str) -> Sim:
    return simulate(sim_database_url, "--settings", "mysite.settings", "--wrapper", RECIPE,
                    "--modes", "async-to-sync", "--pool", "prefork", "--broker", redis_broker,
                    *SMALL, cwd=FIXED)  # fmt: skip
