"""What the runner hosts' tests share: a real ``pooldoctor simulate --runner X`` of a project, with
a marker in its environment that the workers it starts inherit, and what it left behind after it
(processes, pooldoctor's sessions, Redis keys); live workers of a project for ``pooldoctor
inspect``; Redis, which must be there.

Each runner's conftest describes its own fleet (a ``Fleet``: runner, project, settings, its own
Redis database, its marker variable) and takes its fixtures from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from conftest import pooldoctor, pooldoctor_backends, scratch_database
from simulate.sim import Sim, carries, settle

__all__ = ["Fleet", "Run", "line_of", "lost", "marked_pids", "poll", "reachable_redis",
           "redis_keys", "settle", "start", "stop"]  # fmt: skip

DEADLINE = 15.0
POLL = 0.1
T = TypeVar("T")


def poll(probe: Callable[[], T], done: Callable[[T], bool], deadline: float = DEADLINE,
         what: str | Callable[[], str] | None = None) -> T:  # fmt: skip
    """``probe()`` until ``done`` says so or the deadline passed: the last value either way, or,
    given ``what`` (a message, or what makes it once needed), a failed test past the deadline."""
    end = time.monotonic() + deadline
    value = probe()
    while not done(value):
        if time.monotonic() > end:
            if what is None:
                return value
            said = what if isinstance(what, str) else what()
            pytest.fail(f"{said} within {deadline:g} s (last: {value!r})")
        time.sleep(POLL)
        value = probe()
    return value


def line_of(path: Path, text: str) -> int:
    """The first line of ``path`` holding ``text`` (the tests name a project's lines by text)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def reachable_redis(url: str) -> str:
    """Redis must be there (CI starts it): an unreachable one fails the tests, never skips them."""
    parts = urlsplit(url)
    where = (parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        with socket.create_connection(where, timeout=3) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}): start redis-server on "
                    f"{where[0]}:{where[1]} (.ci/run does)", pytrace=False)  # fmt: skip
    if not answer.startswith(b"+PONG"):
        pytest.fail(f"{url} did not answer PING like Redis: {answer!r}", pytrace=False)
    return url


def redis_keys(url: str, pattern: str = "*") -> set[str]:
    from redis import Redis

    with Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
        return {k.decode() for k in client.scan_iter(match=pattern, count=1000)}


def marked_pids(variable: str, marker: str, needle: str | None = None) -> set[int]:
    """Live processes whose environment carries ``variable=marker`` (a run's or a test's own,
    whatever else runs on the machine); with ``needle``, only those whose command line holds it."""
    if needle is None:
        candidates = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
        candidates.discard(os.getpid())
    else:
        found = subprocess.run(["pgrep", "-f", needle], capture_output=True, text=True)
        candidates = {int(pid) for pid in found.stdout.split()}
    entry = f"{variable}={marker}".encode()
    return {pid for pid in candidates if carries(pid, entry)}


def lost(report: dict[str, Any]) -> int:
    """The slots an inspect report's processes lost, all nodes together."""
    return sum(p["lost"] for n in report["nodes"] for p in n.get("processes", []))


def start(*command: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m django <command>`` of a project, as its deployment starts a worker: in a session
    of its own, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "django", *command], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, *, group: bool = False,
         timeout: float = 10.0) -> int:  # fmt: skip
    """``sig`` to the worker's main process, as a supervisor stops it (or, ``group``, to its whole
    session), and its exit code; SIGKILL for whatever is left of its session after ``timeout`` s."""
    if proc.poll() is None:
        (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclasses.dataclass(frozen=True)
class Run(Sim):
    """One finished ``pooldoctor simulate --runner X``: what a Celery run records (workers and
    sessions seen and left), and the Redis keys of the run it left."""

    keys_left: frozenset[str]
    """Keys of the run's pattern in its Redis database after it that were not there before it."""

    def assert_nothing_left(self) -> None:
        """No worker process, pooldoctor session or Redis key of the run is still there."""
        assert self.workers_left == frozenset()
        assert self.sessions_left == frozenset()
        assert self.keys_left == frozenset(), f"keys of the run left: {sorted(self.keys_left)}"


@dataclasses.dataclass(frozen=True)
class Fleet:
    """One runner's tests: its project, its own Redis database and the marker variable its runs'
    workers carry."""

    runner: str
    """``--runner``'s name."""
    project: Path
    settings: str
    redis: str
    marker: str
    """The environment variable a run's marker is passed in."""
    run_keys: str = "*"
    """The pattern of the Redis keys a run makes."""
    needle: str | None = None
    """What the command line of the run's workers holds (None: any process with the marker)."""
    options: tuple[str, ...] = ()
    """The simulate options every run of these tests passes (before the test's own)."""

    @property
    def settings_args(self) -> tuple[str, str]:
        return ("--settings", self.settings)

    def fixtures(self) -> tuple[Any, Any]:
        """The session fixtures ``<runner>_database_url`` (a scratch database of the runner's
        tests) and ``redis_url`` (its Redis database, which must answer)."""
        name = self.runner.replace("-", "_")

        @pytest.fixture(scope="session", name=f"{name}_database_url")
        def database(database_url: str) -> Iterator[str]:
            with scratch_database(database_url, f"pooldoctor_{name}") as url:
                yield url

        @pytest.fixture(scope="session", name="redis_url")
        def redis_url() -> str:
            return reachable_redis(self.redis)

        return database, redis_url

    def pids(self, marker: str, needle: str | None = None) -> set[int]:
        return marked_pids(self.marker, marker, needle or self.needle)

    def simulate(self, database_url: str, *args: str) -> Run:
        """The real CLI; its marked workers and pooldoctor's sessions recorded while it runs, and
        whatever of them and of the run's Redis keys remains once they had a few seconds to go."""
        marker = uuid.uuid4().hex
        keys_before = redis_keys(self.redis, self.run_keys)

        def sessions() -> set[str]:
            return set(pooldoctor_backends(database_url, this_database=True))

        workers: set[int] = set()
        seen: set[str] = set()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as executor:
            future = executor.submit(pooldoctor, "simulate", "--runner", self.runner,
                                     *self.settings_args, *self.options, *args, "--database",
                                     database_url, "--format", "json", cwd=self.project,
                                     env={self.marker: marker,
                                          "DATABASE_URL": database_url})  # fmt: skip
            while not future.done():
                workers |= self.pids(marker)
                seen |= sessions()
                time.sleep(POLL)
            proc = future.result()
        seconds = time.monotonic() - started
        return Run(proc.returncode, proc.stdout, proc.stderr, seconds, frozenset(workers),
                   frozenset(seen), frozenset(settle(lambda: self.pids(marker))),
                   frozenset(settle(sessions)),
                   frozenset(redis_keys(self.redis, self.run_keys) - keys_before))  # fmt: skip

    def inspect(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """``pooldoctor inspect --runner X --format json`` in the project, and its report."""
        proc = pooldoctor("inspect", "--runner", self.runner, *self.settings_args, *args,
                          "--format", "json", cwd=self.project, env=env or {})  # fmt: skip
        assert proc.stdout.startswith("{"), f"exit {proc.returncode}: {proc.stderr}"
        return proc.returncode, dict(json.loads(proc.stdout))

    def live_census(self, env: dict[str, str], log: Path, feed: Callable[[], None],
                    tasks: int) -> dict[str, Any]:  # fmt: skip
        """A live worker's census (install() on, its files under ``env``'s TMPDIR): once its node
        file is there, ``feed()`` it, then inspect until its processes lost ``tasks`` slots."""
        nodes = Path(env["TMPDIR"]) / "pooldoctor-inspect"
        poll(
            lambda: list(nodes.glob("*/node.json")),
            bool,
            what=lambda: f"no node file of the worker (log: {log.read_text()[-2000:]})",
        )
        feed()
        return poll(lambda: self.inspect(env=env)[1], lambda r: lost(r) >= tasks, deadline=30)

    def assert_no_node_left(self, env: dict[str, str]) -> None:
        """Once the live worker stopped: its files under ``env``'s TMPDIR are gone (in a few
        seconds), and inspect finds no node."""
        nodes = Path(env["TMPDIR"]) / "pooldoctor-inspect"
        assert poll(lambda: list(nodes.iterdir()), lambda left: not left) == []
        assert self.inspect(env=env)[1]["nodes"] == []


def forked_sites(report: dict[str, Any], node_name: str, pool: tuple[str, int],
                 tasks: int) -> set[tuple[str, int]]:  # fmt: skip
    """The (file, line) of the leak sites in the census of one live node named ``node_name...``
    (``pool``: its kind and concurrency) whose forked workers ran ``tasks`` leaking tasks."""
    assert report["verdict"] == "leak", report["headline"]
    (node,) = report["nodes"]
    assert node["node"].startswith(node_name)
    assert (node["pool"], node["concurrency"]) == pool
    processes = node["processes"]
    assert lost(report) >= tasks
    assert sum(p["tasks"] for p in processes) == tasks
    assert all(not p["main"] for p in processes)  # the forked workers ran them
    return {(s["file"], s["line"]) for p in processes for s in p["leak_sites"]}
