"""What a host is: the one small interface check, simulate and inspect are written against.

A *host* is a place where a project's async ORM code runs: a plain Python process (a script, a
management command, check's subject processes), a Celery worker, and next the web servers and the
other task runners. Everything specific to one host sits in one module or package named after it
(``hosts/celery/``, ``hosts/inprocess/``), and only there is the host's library imported
(``tests/test_layout.py`` walks the syntax trees to keep it so). The core never imports a host's
library; it asks :func:`pooldoctor.hosts.host_for` which host an object belongs to.

A host says four things:

- :meth:`Host.owns`: whether an object is its task (a Celery task, a Dramatiq actor...);
- :meth:`Host.runner`: one task, run in this process the way the host's own worker runs it (its
  tracer, its signals, its Django integration), as a callable taking the task's arguments;
- :meth:`Host.refusal`: why its worker would never run a task's own code (an ``async def`` under
  ``@app.task`` is never awaited), so pooldoctor does not measure what cannot run;
- :meth:`Host.facts`: its version, concurrency model, the project's receivers of its process and
  task signals, and what its Django integration does to connections.

A host with workers of its own (:class:`WorkerHost`) also loads the project's app and reaches its
broker; ``simulate`` starts real workers with pooldoctor's per-process ledger installed, feeds
them, collects one record per task and stops them, whatever happens (``hosts/celery/fleet.py``);
and :meth:`WorkerHost.ask` collects a live census from running ones (``inspect``).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from pooldoctor.core.model import ForkCheck
from pooldoctor.core.project import ProjectSpec
from pooldoctor.errors import PooldoctorError, UsageError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_TIP = "pass --broker redis://127.0.0.1:6379/N (a database number of its own)"
REDIS_TIMEOUT = 3.0
REDIS_PURGE_LIMIT = 5.0


def delete_redis_keys(url: str, patterns: Sequence[str]) -> int:
    """Delete the keys matching ``patterns`` (Redis glob patterns) on ``url``: what a run put on
    the user's Redis. Never raises and bounded in time: it runs at the end of every run, in the
    janitor and in a dying worker. How many keys went."""
    with contextlib.suppress(Exception):
        import redis

        # Any: redis-py 5 types sync and asyncio replies as one union.
        client: Any = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                           socket_timeout=REDIS_TIMEOUT)  # fmt: skip
        with contextlib.closing(client):
            deadline = time.monotonic() + REDIS_PURGE_LIMIT
            keys = []
            for pattern in patterns:
                for key in client.scan_iter(match=pattern, count=500):
                    keys.append(key)
                    if time.monotonic() > deadline:
                        break
            return int(client.delete(*keys)) if keys else 0
    return 0


def glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return re.sub(r"([\[\]*?\\])", r"\\\1", text)


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """What a host says about itself, for reports and findings."""

    name: str
    """The host's name: ``inprocess``, ``celery``..."""
    version: str
    """The installed version of its library (``not installed``), or Python's for in-process."""
    concurrency: str | None = None
    """Its pool or concurrency model, as configured: ``prefork -c 4``, ``threads -c 8``..."""
    handlers: tuple[str, ...] = ()
    """The project's receivers of the host's process and task signals (``module.function``)."""
    django: str | None = None
    """What its Django integration does to connections, for the installed version."""


class Host(abc.ABC):
    """One place where tasks run. Subclasses import their library inside their methods only, so
    that asking which host owns an object never imports a library the project does not use."""

    name: ClassVar[str]
    """Short, stable, lower case: the name in reports and the module's name."""
    distribution: ClassVar[str | None] = None
    """The library's distribution name on PyPI, for its version (None: none needed)."""

    def installed(self) -> bool:
        """Whether the host's library is installed here."""
        return self.distribution is None or self.version() != "not installed"

    def version(self) -> str:
        """The installed version of the host's library, or ``not installed``."""
        if self.distribution is None:
            return ""
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    @abc.abstractmethod
    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` is one of this host's task objects (what its worker runs)."""

    @abc.abstractmethod
    def runner(self, task: Any) -> Callable[..., Any]:
        """A callable that runs ``task`` once per call, in this thread, as the host's worker
        runs it; it takes the task's arguments and raises what the task raised."""

    def refusal(self, task: Any) -> str | None:
        """Why the host's worker would never run ``task``'s own code, or None."""
        return None

    def signature_target(self, task: Any) -> Any:
        """The function whose signature the task's arguments must bind to."""
        return task

    def facts(self, app: Any = None) -> HostFacts:
        """What the host says about itself (and about the project's ``app``, when given)."""
        return HostFacts(name=self.name, version=self.version())


@dataclasses.dataclass(frozen=True)
class LiveAnswers:
    """What running workers answered to a live census, by node name."""

    broker: str
    """The broker asked, password masked."""
    replies: Mapping[str, Mapping[str, Any]]
    """Each node's census, or ``{"error": ...}``; ``"installed": False`` marks a node that
    answered without pooldoctor installed."""
    pinged: tuple[str, ...]
    """Nodes that answered a ping."""
    destination: tuple[str, ...]
    received_at: float
    """``time.time()`` when the answers were in: how old each snapshot is."""
    seconds: float
    problems: tuple[str, ...] = ()
    """A broadcast that failed mid-way (the broker went away): what came back is kept."""


class WorkerHost(Host):
    """A host with worker processes of its own that pooldoctor can start, feed, stop and ask."""

    @abc.abstractmethod
    def load_app(self, spec: str) -> Any:
        """The project's app named ``MODULE:ATTR`` (``MODULE:ATTR()`` calls a factory), or a
        :class:`~pooldoctor.errors.PooldoctorError` saying what is wrong with the name."""

    @abc.abstractmethod
    def check_broker(self, url: str) -> None:
        """Reach the host's broker once, bounded in time, or raise a one-line error."""

    def ask(self, app: Any, timeout: float, destination: Sequence[str] = ()) -> LiveAnswers:
        """Ask the app's running workers (all, or the nodes named) for their census."""
        raise UsageError(f"{self.name} workers cannot be asked for a live census")

    def fork_check(self, spec: ProjectSpec, application_name: str) -> ForkCheck | None:
        """What a forked worker process of the project's own app keeps of the pool its parent
        had open, measured by one real fork; None for a host that does not fork, or a project
        without an app of this host (then nothing is started)."""
        return None


class RunnerHost(WorkerHost):
    """A task runner besides Celery (``simulate --runner NAME``): the fleet around its real workers
    is :func:`pooldoctor.hosts.fleet.run_runner_fleet`; the runner says how to start them, how to
    send them tasks and what to delete from its broker afterwards. Its worker side is a module of
    its own that loads the project as the runner's worker does and calls a
    :class:`pooldoctor.hosts.probe_worker.ProbeWorker` from the runner's hooks."""

    runner_name: ClassVar[str]
    """Its name on the command line (``--runner django-tasks``)."""
    title: ClassVar[str]
    """Its name in sentences: ``RQ``, ``Dramatiq``, ``Django's Tasks (db_worker)``."""
    pools: ClassVar[tuple[str, ...]]
    """Its kinds of worker (``--pool``), the default first: ``fork``, ``simple``..."""
    forking: ClassVar[frozenset[str]] = frozenset()
    """The kinds of worker that fork the process which loaded the project."""
    fix: ClassVar[tuple[str, str] | None] = None
    """The fix for an inherited pool in this runner's own hook: (name, what to change)."""
    uses_broker: ClassVar[bool] = True
    """Whether its queue is on a broker (``--broker``); else it is in the project's database."""

    def load_app(self, spec: str) -> Any:
        raise UsageError(f"--app is not used by --runner {self.runner_name}",
                         "leave it out: the project's settings configure the runner")  # fmt: skip

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Entries to add to the run's spec before the worker starts (its broker's settings,
        files it needs in the run's directory)."""
        return {}

    @abc.abstractmethod
    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        """The real worker's command line, for the run's spec (``--pool`` is ``spec["pool"]``,
        its concurrency ``spec["workers"]``); it must load the runner's worker module first."""

    def env(self, spec: Mapping[str, Any]) -> dict[str, str]:
        """Environment variables the worker needs besides pooldoctor's own."""
        return {}

    @abc.abstractmethod
    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """Send one task per entry of ``sent`` (its ``task_id`` as the runner's job id where the
        runner takes one, else passed to the probe), the way the project would."""

    def purges(self, spec: Mapping[str, Any]) -> bool:
        """Whether the run leaves anything on a broker of the user's (then :meth:`purge` runs at
        the end, and from the janitor if pooldoctor is killed)."""
        return False

    def purge(self, spec: Mapping[str, Any]) -> None:
        """Delete what the run created on the user's broker; never raises, bounded in time."""

    def reach_redis(self, url: str, *, embedded: str = "Celery's filesystem transport") -> None:
        """For a runner whose broker is Redis: one clear line for ``--broker embedded`` (what
        ``embedded`` would mean, for the runners that have none) or another scheme, then the
        server pinged once, bounded in time (a worker would retry a Redis that is down for
        ever)."""
        from pooldoctor.core.project import mask_url

        shown = mask_url(url)
        if url == "embedded":
            raise UsageError(f"--runner {self.runner_name} needs a Redis server: --broker "
                             f"embedded is {embedded}", REDIS_TIP)  # fmt: skip
        if not url.startswith(REDIS_SCHEMES):
            raise UsageError(f"--broker {shown}: --runner {self.runner_name} takes a Redis URL",
                             REDIS_TIP)  # fmt: skip
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                          socket_timeout=REDIS_TIMEOUT)  # fmt: skip
            with contextlib.closing(client):
                client.ping()
        except (redis.RedisError, ValueError, OSError) as exc:
            raise PooldoctorError(
                f"--broker {shown}: cannot reach Redis: {exc}",
                "start Redis, or fix the URL (redis://HOST:PORT/DB)",
            ) from exc

    def task_threads(self, pool: str, workers: int) -> int:
        """How many threads of one worker process run tasks at once, for ``--pool`` and
        ``--workers`` (a threads kind: its concurrency)."""
        return 1

    def children_died(self, output: str) -> list[dict[str, str]]:
        """Worker processes that died mid-task, read off the worker's output (name, pid, how)."""
        return []

    def ask(self, app: Any, timeout: float, destination: Sequence[str] = ()) -> LiveAnswers:
        """The census of this runner's live nodes on this machine, from the snapshot files its
        processes write (``pooldoctor.<runner>.install()``): there is no remote control to ask."""
        import time

        from pooldoctor.hosts import live

        started = time.monotonic()
        replies = live.read_nodes(self.runner_name, tuple(destination))
        return LiveAnswers(
            broker=f"{self.title} workers' snapshot files in {live.snapshot_root()}",
            replies=replies,
            pinged=tuple(replies),
            destination=tuple(destination),
            received_at=time.time(),
            seconds=round(time.monotonic() - started, 3),
        )


def read_per_process(directory: Path, part: str) -> dict[int, Any]:
    """What each worker process wrote to ``directory/part/<pid>.json`` (its leak sites, its
    timeline), by pid."""
    return {int(p.stem): json.loads(p.read_text()) for p in (directory / part).glob("*.json")}
