"""Running ``pooldoctor simulate`` for real, and watching what its workers and sessions do.

Every run goes through the real CLI (``conftest.pooldoctor``) with a marker in its environment,
which the Celery workers it starts inherit: while it runs, the workers carrying the marker and the
pooldoctor sessions in the tests' own database are recorded; after it, whatever of either is still
there (after a bounded wait) is what the run left behind. Other pooldoctor runs on the same machine
carry no marker and use other databases, so they never count.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import celery
from conftest import FIXTURES, PROJECTS, pooldoctor, pooldoctor_backends

LEAKY = FIXTURES / "leaky"
FIXED = FIXTURES / "fixed"
CELERYPROJ = PROJECTS / "celeryproj"
RECIPE = "mysite.celeryapp:async_task_wrapper"
RECIPE_TASK = "mysite.celeryapp:async_task()"
CLEAN_WRAPPER = "celeryproj.wrappers:async_task_wrapper"
SMALL = ("--workers", "2", "--tasks", "12")
WORKER_MODULE = "pooldoctor.hosts.celery.worker"
MARKER = "POOLDOCTOR_TEST_RUN"
CELERY_VERSION = tuple(int(part) for part in celery.__version__.split(".")[:2])
FIXUP_CLOSES_POOL = CELERY_VERSION >= (5, 6)
"""From Celery 5.6 the Django fix-up calls close_pool() around every prefork task."""
POLL = 0.1
SETTLE = 10.0


@dataclasses.dataclass(frozen=True)
class Sim:
    """One finished ``pooldoctor simulate`` run."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    workers_seen: frozenset[int]
    """Celery worker processes of this run seen while it ran (parent and children)."""
    sessions_seen: frozenset[str]
    workers_left: frozenset[int]
    sessions_left: frozenset[str]

    @property
    def report(self) -> dict[str, Any]:
        assert self.stdout, f"no report (exit {self.code}); stderr: {self.stderr}"
        return dict(json.loads(self.stdout))

    def result(self, subject: str) -> dict[str, Any]:
        results = {r["subject"]: r for r in self.report["results"]}
        assert subject in results, f"{subject} not in {sorted(results)}"
        return results[subject]

    def __str__(self) -> str:
        """For assertion messages: what went wrong, in the report's own words."""
        if not self.stdout.startswith("{"):
            return f"exit {self.code}; stderr: {self.stderr}"
        report = self.report
        lines = [f"exit {self.code}: {report['verdict']}: {report['headline']}"]
        for r in report["results"]:
            lines.append(f"  {r['subject']}: {r['verdict']}: {r['summary']} "
                         f"(stop: {r['stop_detail']}; errors: {r['errors']})")  # fmt: skip
        lines += [f"  {f['code']} {f['message']}" for f in report["findings"]]
        return "\n".join(lines)

    def codes(self, subject: str) -> set[str]:
        return {f["code"] for f in self.report["findings"] if f["subject"] == subject}


def simulate(
    database_url: str,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    fmt: str = "json",
) -> Sim:
    marker = uuid.uuid4().hex
    before = worker_pids()
    workers: set[int] = set()
    sessions: set[str] = set()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(
            pooldoctor,
            "simulate",
            *args,
            "--database",
            database_url,
            "--format",
            fmt,
            cwd=cwd,
            env={**(env or {}), MARKER: marker},
        )
        while not future.done():
            workers |= worker_pids(marker) - before
            sessions |= set(pooldoctor_backends(database_url, this_database=True))
            time.sleep(POLL)
        proc = future.result()
    seconds = time.monotonic() - started
    workers_left = settle(lambda: worker_pids(marker) - before)
    sessions_left = settle(lambda: set(pooldoctor_backends(database_url, this_database=True)))
    return Sim(proc.returncode, proc.stdout, proc.stderr, seconds, frozenset(workers),
               frozenset(sessions), frozenset(workers_left), frozenset(sessions_left))  # fmt: skip


def worker_pids(marker: str | None = None) -> set[int]:
    """Live ``celery -A pooldoctor.hosts.celery.worker`` processes (with ``marker``: of one run)."""
    found = subprocess.run(["pgrep", "-f", WORKER_MODULE], capture_output=True, text=True)
    pids = {int(pid) for pid in found.stdout.split()}
    if marker is None:
        return pids
    return {pid for pid in pids if carries(pid, f"{MARKER}={marker}".encode())}


def carries(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile
        return False


def settle(left: Callable[[], set[Any]]) -> set[Any]:
    """What is still there once it had SETTLE seconds to go away."""
    deadline = time.monotonic() + SETTLE
    remaining = left()
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL)
        remaining = left()
    return remaining
