"""Fixtures for RQ's tests: tests/projects/rqproj on real Redis (database 3) and PostgreSQL.

Each simulate run goes through the real CLI; while it runs, the worker processes it started (its
``rqworker`` processes and their work horses, carrying a marker in their environment) are
recorded, and after it whatever of them, of pooldoctor's sessions and of the Redis keys the run
made is still there (after a bounded wait) is what it left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECTS, pooldoctor, pooldoctor_backends, scratch_database

RQPROJ = PROJECTS / "rqproj"
REDIS = "redis://127.0.0.1:6379/3"
SETTINGS = ("--settings", "rqproj.settings")
WORKER_MODULE = "pooldoctor.hosts.rq.worker"
MARKER = "POOLDOCTOR_RQ_TEST_RUN"
POLL = 0.1
SETTLE = 10.0


def redis_client() -> Any:
    from redis import Redis

    return Redis.from_url(REDIS, socket_connect_timeout=3, socket_timeout=3)


def redis_keys() -> set[bytes]:
    return set(redis_client().scan_iter(count=1000))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis must be there (CI starts it): unreachable fails the tests, never skips them."""
    from redis.exceptions import RedisError

    try:
        redis_client().ping()
    except (RedisError, OSError) as exc:
        pytest.fail(f"Redis is not reachable at {REDIS} ({exc}): start redis-server on "
                    "127.0.0.1:6379", pytrace=False)  # fmt: skip
    return REDIS


@pytest.fixture(scope="session")
def rq_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_rq") as url:
        yield url


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished ``pooldoctor simulate --runner rq`` run, and what it left."""

    code: int
    stdout: str
    stderr: str
    workers_seen: frozenset[int]
    workers_left: frozenset[int]
    sessions_left: frozenset[str]
    keys_made: frozenset[bytes]
    """Keys in Redis after the run that were not there before it."""

    @property
    def report(self) -> dict[str, Any]:
        assert self.stdout, f"no report (exit {self.code}); stderr: {self.stderr}"
        return dict(json.loads(self.stdout))

    def result(self, subject: str) -> dict[str, Any]:
        results = {r["subject"]: r for r in self.report["results"]}
        assert subject in results, f"{subject} not in {sorted(results)}; stderr: {self.stderr}"
        return results[subject]


def simulate(database_url: str, *args: str) -> Run:
    marker = uuid.uuid4().hex
    before = redis_keys()
    seen: set[int] = set()
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(
            pooldoctor, "simulate", "--runner", "rq", *SETTINGS, "--broker", REDIS, *args,
            "--database", database_url, "--format", "json", cwd=RQPROJ,
            env={MARKER: marker, "DATABASE_URL": database_url},
        )  # fmt: skip
        while not future.done():
            seen |= worker_pids(marker)
            time.sleep(POLL)
        proc = future.result()
    left = settle(lambda: worker_pids(marker))
    sessions = settle(lambda: set(pooldoctor_backends(database_url, this_database=True)))
    made = redis_keys() - before
    return Run(proc.returncode, proc.stdout, proc.stderr, frozenset(seen), frozenset(left),
               frozenset(sessions), frozenset(made))  # fmt: skip


def worker_pids(marker: str) -> set[int]:
    """Live worker processes of one run (rqworker processes and work horses alike)."""
    found = subprocess.run(["pgrep", "-f", WORKER_MODULE], capture_output=True, text=True)
    entry = f"{MARKER}={marker}".encode()
    pids = set()
    for pid in map(int, found.stdout.split()):
        try:
            if entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.add(pid)
        except OSError:  # gone meanwhile
            pass
    return pids


def settle(left: Callable[[], set[Any]]) -> set[Any]:
    """What is still there once it had SETTLE seconds to go away."""
    deadline = time.monotonic() + SETTLE
    remaining = left()
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL)
        remaining = left()
    return remaining


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "RQPROJ_REDIS": REDIS, **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env
