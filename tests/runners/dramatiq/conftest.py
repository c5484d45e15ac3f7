"""The Dramatiq host's tests run real ``dramatiq`` workers on a real Redis (database 4) and a
PostgreSQL database of their own; whatever they start, they check is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from conftest import PROJECTS, scratch_database

DRAMATIQPROJ = PROJECTS / "dramatiqproj"
SETTINGS = ("--settings", "dramatiqproj.settings")
REDIS = "redis://127.0.0.1:6379/4"
MARKER = "POOLDOCTOR_DRAMATIQ_TEST"
WORKER_MODULE = "pooldoctor.hosts.dramatiq.worker"
POLL = 0.1
SETTLE = 10.0


@pytest.fixture(scope="session")
def dramatiq_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_dramatiq") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis must be there (CI starts it): an unreachable one fails the tests, never skips them."""
    parts = urlsplit(REDIS)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=3):
            pass
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except (OSError, redis.RedisError) as exc:
        pytest.fail(f"Redis is not reachable at {REDIS} ({exc}): start redis-server on "
                    "127.0.0.1:6379 (.ci/run does)", pytrace=False)  # fmt: skip
    return REDIS


def redis_keys(url: str, pattern: str) -> set[str]:
    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        return {k.decode() for k in client.scan_iter(match=pattern, count=500)}
    finally:
        client.close()


def marked_pids(marker: str, needle: str = WORKER_MODULE) -> set[int]:
    """Live processes whose command line holds ``needle`` and whose environment carries
    ``marker`` (a test's own, whatever else runs on the machine)."""
    found = subprocess.run(["pgrep", "-f", needle], capture_output=True, text=True)
    entry = f"{MARKER}={marker}".encode()
    pids = set()
    for pid in (int(p) for p in found.stdout.split()):
        try:
            if entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.add(pid)
        except OSError:  # gone meanwhile
            continue
    return pids


def settle(left: object) -> set[int]:
    """What is still there once it had SETTLE seconds to go away."""
    assert callable(left)
    deadline = time.monotonic() + SETTLE
    remaining: set[int] = left()
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL)
        remaining = left()
    return remaining


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the dramatiq command's main process, as a supervisor does (it forwards the signal:
    one sent to its whole group would reach each worker process twice, which kills it instead of
    a warm shutdown); SIGKILL what is left of its session after 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
