"""Fixtures for the django-q tests: a database of their own, Redis DB 6, the project
tests/projects/djangoqproj, and what a run left behind (processes, sessions, keys)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import PROJECTS, pooldoctor, pooldoctor_backends, scratch_database

DJANGOQPROJ = PROJECTS / "djangoqproj"
REDIS = "redis://127.0.0.1:6379/6"
"""The django-q tests' own Redis database (RQ's use 3, Dramatiq's 4, Huey's 5)."""
SETTINGS = ("--settings", "djangoqproj.settings")
MARKER = "POOLDOCTOR_DJANGO_Q_TEST"
DEADLINE = 15.0
POLL = 0.1
T = TypeVar("T")


def poll(probe: Callable[[], T], done: Callable[[T], bool], deadline: float = DEADLINE) -> T:
    """``probe()`` until ``done`` says so or the deadline passed: the last value either way."""
    end = time.monotonic() + deadline
    value = probe()
    while not done(value) and time.monotonic() < end:
        time.sleep(POLL)
        value = probe()
    return value


@pytest.fixture(scope="session")
def django_q_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_django_q") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis must be there (CI starts it): an unreachable one fails the tests, never skips them."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=3) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS} ({exc}): start redis-server on "
                    "127.0.0.1:6379", pytrace=False)  # fmt: skip
    if not answer.startswith(b"+PONG"):
        pytest.fail(f"{REDIS} did not answer PING like Redis: {answer!r}", pytrace=False)
    return REDIS


def redis_keys(pattern: str) -> list[str]:
    from redis import Redis

    with Redis.from_url(REDIS) as client:
        return sorted(k.decode() for k in client.scan_iter(match=pattern))


def marked_pids(marker: str) -> set[int]:
    """Live processes carrying ``MARKER=marker`` in their environment (a run's cluster)."""
    entry = f"{MARKER}={marker}".encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if entry in (proc / "environ").read_bytes().split(b"\0"):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


class Run:
    """One finished ``pooldoctor simulate --runner django-q`` and what it left behind."""

    def __init__(self, proc: subprocess.CompletedProcess[str], pids_left: set[int],
                 sessions_left: list[str], keys_left: list[str]) -> None:  # fmt: skip
        self.proc = proc
        self.pids_left = pids_left
        self.sessions_left = sessions_left
        self.keys_left = keys_left

    @property
    def report(self) -> dict[str, Any]:
        assert self.proc.stdout.startswith("{"), f"exit {self.proc.returncode}: {self.proc.stderr}"
        return dict(json.loads(self.proc.stdout))

    def result(self, subject: str) -> dict[str, Any]:
        results = {r["subject"]: r for r in self.report["results"]}
        assert subject in results, f"{subject} not in {sorted(results)}: {self.proc.stderr}"
        return results[subject]


def simulate(database_url: str, *args: str) -> Run:
    """The real CLI, then whatever of its processes, sessions and Redis keys remain once they
    had a few seconds to go."""
    marker = uuid.uuid4().hex
    proc = pooldoctor("simulate", "--runner", "django-q", *SETTINGS, "--tasks", "6",
                      "--workers", "2", *args, "--database", database_url, "--format", "json",
                      cwd=DJANGOQPROJ, env={MARKER: marker})  # fmt: skip
    pids = poll(lambda: marked_pids(marker), lambda left: not left)
    sessions = poll(lambda: pooldoctor_backends(database_url, this_database=True),
                    lambda left: not left)  # fmt: skip
    return Run(proc, pids, sessions, redis_keys("django_q:pooldoctor-*"))


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
