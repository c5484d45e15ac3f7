"""Huey with its Django integration (``huey.contrib.djhuey``): a task run in-process the way the
consumer runs it (``check``), real ``run_huey`` consumers started, fed and stopped
(``simulate --runner huey``: :mod:`.worker` is what they load), and the one line a project adds
for ``inspect`` (:mod:`.install`, public as :mod:`pooldoctor.huey`).

djhuey's Django integration is ``db_task()``/``db_periodic_task()``: they wrap the function in
``close_db``, which calls ``close_old_connections()`` before and after it (unless the instance is
in immediate mode); a plain ``task()`` does nothing to connections. The consumer's ``process``
worker type forks (``multiprocessing``'s fork context) after the project is loaded, so a query
before it leaves the children a pool their parent opened; its per-process hook is
``@huey.on_startup()``, which runs first in every worker.

Huey is imported in this package only, inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pooldoctor.errors import UsageError
from pooldoctor.hosts.base import HostFacts, RunnerHost, delete_redis_keys

EMBEDDED = "embedded"
FIX_CODE = """\
from django.db import connections
from huey.contrib.djhuey import on_startup

@on_startup()
def discard_inherited_pool():
    # Runs first in every consumer worker process: the pool the parent opened before the
    # fork is dropped, and this process opens its own.
    connections["default"].close_pool()"""
# Huey's own key names (huey/storage.py): queue, schedule, results, counters, notifications.
KEY_PATTERNS = ("huey.*.{name}", "huey.*.{name}.*")
# The options of the consumer that pooldoctor sets itself (the rest of the project's HUEY stays).
# Its storage's connection too: Redis takes one of url, pool or parameters, never two.
OWN_KEYS = ("name", "huey_class", "connection", "url", "connection_pool", "host", "port", "db",
            "password", "username", "unix_socket_path", "path", "filename", "dsn",
            "immediate")  # fmt: skip
_DIED = re.compile(r"Worker (\d+) died")


class HueyHost(RunnerHost):
    name = "huey"
    runner_name = "huey"
    title = "Huey"
    distribution = "huey"
    pools = ("thread", "process")
    forking = frozenset(("process",))
    fix = ("discard-inherited-pool-on-startup", FIX_CODE)
    uses_broker = True

    def task_threads(self, pool: str, workers: int) -> int:
        return workers if pool == "thread" else 1  # its consumer's -w threads

    # --- check --task ---------------------------------------------------------------------------

    def owns(self, obj: Any) -> bool:
        if "huey" not in sys.modules:  # no Huey task can exist: do not import it
            return False
        from huey.api import TaskWrapper

        return isinstance(obj, TaskWrapper)

    def runner(self, task: Any) -> Callable[..., Any]:
        """Run a Huey task in this thread as a consumer's worker does: ``huey.execute`` on a task
        instance (signals, pre/post-execute hooks, djhuey's ``close_db`` around the function).

        The instance is taken out of immediate mode, as a consumer requires (djhuey's
        ``close_db`` closes nothing in immediate mode), and given an in-memory storage: its
        revocation check and result go nowhere near the project's broker. What the task raised
        (Huey logs it and carries on) is raised again."""
        from huey.storage import MemoryStorage

        huey = task.huey
        huey._immediate = False  # the attribute: the setter would build the real storage
        huey.storage = MemoryStorage(huey.name)
        raised: dict[str, BaseException] = {}

        def post_execute(instance: Any, value: Any, exc: BaseException | None) -> None:
            if exc is not None:
                raised[instance.id] = exc

        # Last of the post-execute hooks, as the consumer's worker sees them all run first.
        huey.post_execute(name="pooldoctor_check")(post_execute)

        def run(*args: Any, **kwargs: Any) -> Any:
            instance = task.s(*args, **kwargs)  # a fresh id, as the project's call makes
            value = huey.execute(instance)
            exc = raised.pop(instance.id, None)
            if exc is not None:
                raise exc
            return value

        return run

    def refusal(self, task: Any) -> str | None:
        """``db_task`` on an ``async def``: Huey refuses a coroutine function at decoration, but
        djhuey's ``close_db`` hides it, and the consumer only creates the coroutine."""
        if inspect.iscoroutinefunction(self.signature_target(task)):
            return (
                "a Huey task on an async def: the consumer calls it without awaiting the "
                "coroutine, so the task's body never runs"
            )
        return None

    def signature_target(self, task: Any) -> Any:
        """The project's function: djhuey's ``db_task`` keeps it as ``call_local`` (its
        ``close_db`` wrapper is ``task.func``); a plain task's is ``task.func``."""
        return vars(task).get("call_local") or task.func

    def facts(self, app: Any = None) -> HostFacts:
        if not self.installed():
            return super().facts(app)
        return HostFacts(name=self.name, version=self.version(), concurrency=_concurrency(),
                         django=django_integration())  # fmt: skip

    # --- simulate --runner huey -----------------------------------------------------------------

    def check_broker(self, url: str) -> None:
        """``embedded`` is Huey's own file storage in the run's directory; else a Redis URL,
        reached once from here (a consumer would retry a Redis that is down for ever)."""
        if url == EMBEDDED:
            if not file_storage_is_shared():
                raise UsageError(
                    f"--broker embedded: Huey {self.version()}'s file storage is not safe across "
                    "processes and threads (its FileLock)",
                    "pass --broker redis://127.0.0.1:6379/N, or upgrade huey",
                )
            return
        self.reach_redis(url)

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The Huey instance the run's consumer and pooldoctor share: the run's queue name on
        the given Redis, or Huey's file storage in the run's directory."""
        if spec["broker"] == EMBEDDED:
            path = str(Path(spec["dir"]) / "huey")
            return {"huey": {"huey_class": "huey.FileHuey", "name": spec["queue"], "path": path}}
        return {"huey": {"huey_class": "huey.RedisHuey", "name": spec["queue"],
                         "url": spec["broker"]}}  # fmt: skip

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        return [sys.executable, "-m", "pooldoctor.hosts.huey.worker", *consumer_options(spec)]

    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """One Huey message per task, with the sent task id as Huey's own task id, serialized as
        the consumer's instance does (its compression read from ``ready.json``)."""
        from huey.registry import Message

        ready = json.loads((Path(spec["dir"]) / "ready.json").read_text())
        huey = make_huey(spec["huey"], ready.get("serializer", {}))
        wire = spec["subject"]
        try:
            for entry in sent:
                if wire["kind"] == "task":
                    args, kwargs = tuple(wire.get("args", ())), dict(wire.get("kwargs", {}))
                else:
                    args, kwargs = (entry["kind"],), {}
                # retries None: the task class's own defaults, as task.s() leaves them
                message = Message(entry["task_id"], ready["task"], None, None, None, None, args,
                                  kwargs)  # fmt: skip
                huey.storage.enqueue(huey.serializer.serialize(message), None)
        finally:
            close_storage(huey)

    def purges(self, spec: Mapping[str, Any]) -> bool:
        return bool(spec["broker"] != EMBEDDED)

    def purge(self, spec: Mapping[str, Any]) -> None:
        """Delete the run's keys (queue, schedule, results, counters, notifications) from the
        user's Redis; the embedded storage goes with the run's directory."""
        purge_keys(spec["huey"])

    def children_died(self, output: str) -> list[dict[str, str]]:
        """Huey's health check says ``Worker N died, restarting`` (every 10 s by default)."""
        return [{"name": f"Worker-{m.group(1)}", "pid": "", "how": "died"}
                for m in _DIED.finditer(output)]  # fmt: skip


def consumer_options(spec: Mapping[str, Any]) -> list[str]:
    """``run_huey``'s options for the run: the kind of worker and how many, no periodic tasks
    (the scheduler would run the project's own); the file storage is polled, not blocking, so
    it is polled often."""
    options = ["-k", str(spec["pool"]), "-w", str(spec["workers"]), "--no-periodic"]
    if spec["broker"] == EMBEDDED:
        options += ["--delay", "0.02", "--max-delay", "0.1"]
    return options


def file_storage_is_shared() -> bool:
    """Whether Huey's file storage locks across processes and threads: its FileLock takes one
    descriptor per thread and never unlinks the lock file another process holds (older
    versions do both, so two writers can hold "the" lock at once)."""
    from huey.utils import FileLock

    names = FileLock.__init__.__code__.co_names
    return "_local" in names and "unlink" not in names


def make_huey(conf: Mapping[str, Any], serializer: Mapping[str, Any] | None = None) -> Any:
    """A Huey instance on the run's storage (no consumer: only to enqueue or purge)."""
    from huey.utils import load_class

    rest = {k: v for k, v in conf.items() if k not in ("huey_class", "name")}
    return load_class(conf["huey_class"])(conf["name"], **rest, **dict(serializer or {}))


def close_storage(huey: Any) -> None:
    with contextlib.suppress(Exception):
        huey.storage.close()
    pool = getattr(huey.storage, "pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.disconnect()


def run_keys(conf: Mapping[str, Any]) -> list[str]:
    """The patterns of the keys Huey makes for the run's instance: its name as the installed
    Huey cleans it (which characters go changed between versions)."""
    huey = make_huey(conf)
    name = huey.storage.name
    close_storage(huey)
    return [pattern.format(name=name) for pattern in KEY_PATTERNS]


def purge_keys(conf: Mapping[str, Any]) -> None:
    """Never raises, bounded in time: it runs at the end of every run and in a dying worker."""
    if "url" not in conf:
        return
    with contextlib.suppress(Exception):  # the key patterns come from the installed Huey
        delete_redis_keys(conf["url"], run_keys(conf))


def django_integration() -> str:
    """What djhuey does to connections, read from the installed code."""
    try:
        from huey.contrib import djhuey
    except Exception:  # djhuey reads settings at import: Django may not be configured here
        return "huey.contrib.djhuey could not be read (Django is not configured here)"
    source = inspect.getsource(djhuey.close_db)
    closes = source.count("close_old_connections()")
    if not closes:
        return "djhuey's close_db() does not call close_old_connections() in this version"
    where = "before and after" if closes >= 2 else "around"
    skipped = " (not in immediate mode)" if "immediate" in source else ""
    return (
        f"db_task()/db_periodic_task() wrap the function in close_db(): close_old_connections() "
        f"{where} it{skipped}; task()/periodic_task() do nothing to connections"
    )


def _concurrency() -> str | None:
    """The ``HUEY`` setting's consumer options, as ``run_huey`` reads them."""
    with contextlib.suppress(Exception):
        from django.conf import settings

        conf = getattr(settings, "HUEY", None)
        consumer = conf.get("consumer", {}) if isinstance(conf, dict) else {}
        return f"{consumer.get('worker_type', 'thread')} -w {consumer.get('workers', 1)}"
    return None
