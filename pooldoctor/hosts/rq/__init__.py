"""RQ (with django-rq): a job function run in-process as RQ's worker runs it (``check --task``),
real ``rqworker`` processes started, fed through Redis and stopped (``simulate --runner rq``:
:mod:`.worker` is what they run, :mod:`.workers` their classes), and the census a project's
workers keep for ``inspect --runner rq`` (:mod:`.install`, public as :mod:`pooldoctor.rq`).

RQ's ``Worker`` forks a work horse per job (``fork``): the horse runs the job and exits with
``os._exit``; ``SimpleWorker`` runs jobs in the worker process (``simple``); django-rq's
``rqworker-pool`` forks its workers from one process that loaded the project, and each of them
forks its horses (``pool``). django-rq closes
Django's connections once, before the worker starts, and nothing around each job (read from its
code at run time: :func:`django_integration`). rq, redis and django_rq are imported in this
package only, inside the functions that use them.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pooldoctor.hosts.base import HostFacts, RunnerHost
from pooldoctor.hosts.rq.workers import FIX_CODE

BROKER_TIMEOUT = 3.0
PURGE_LIMIT = 10.0
"""How long purging a run's keys may take (one SCAN of the rq: keys)."""
LOCKS = ("rq:clean_groups",)
"""RQ's maintenance locks, named after nothing of the run's: deleted by the purge when the run's
workers took them (they were not there before), else they expire on their own."""
JOBS_FILE = "rq-jobs.json"
"""The run's job ids, written when they are sent, read by the purge."""
WORKERS_FILE = "rq-workers.txt"
"""The run's worker names, one a line, written by each worker as it starts."""
HORSE_KILLED = re.compile(
    r"Work horse killed for job (?P<job>\S+): retpid=(?P<pid>\d+), ret_val=(?P<how>-?\d+)"
)
"""RQ's own log line when a work horse died mid-job."""


class RQHost(RunnerHost):
    name = "rq"
    runner_name = "rq"
    title = "RQ"
    distribution = "rq"
    pools = ("fork", "simple", "pool")
    forking = frozenset(("fork", "pool"))
    uses_broker = True

    fix = ("discard-inherited-pool-in-horse", FIX_CODE)

    # --- check --task ------------------------------------------------------------------------

    def owns(self, obj: Any) -> bool:
        """A job function of RQ's ``@job`` (django-rq's wraps it): a plain function to which the
        decorator added ``enqueue``/``delay``, defined in rq's decorators module."""
        if "rq" not in sys.modules:  # no RQ job function can exist: do not import it
            return False
        enqueue = getattr(obj, "enqueue", None)
        code = getattr(enqueue, "__code__", None)
        origin = getattr(sys.modules.get("rq.decorators"), "__file__", None)
        return code is not None and origin is not None and code.co_filename == origin

    def runner(self, task: Any) -> Callable[..., Any]:
        """Run the job function as RQ's worker does: a ``Job`` performed in this thread
        (``Job.perform``, which runs an ``async def`` through ``asyncio.run``), after what
        django-rq's ``rqworker`` does to connections before its worker starts
        (``reset_db_connections``). The Redis bookkeeping around it (status, registries) touches
        no database connection and is left out, so no Redis is needed."""
        from redis import Redis
        from rq.job import Job

        reset = _reset_db_connections()
        if reset is not None:
            reset()
        connection = Redis()  # never connected: perform() reads and writes nothing there

        def run(*args: Any, **kwargs: Any) -> Any:
            job = Job.create(task, args=args, kwargs=kwargs, connection=connection)
            return job.perform()

        return run

    def facts(self, app: Any = None) -> HostFacts:
        if not self.installed():
            return super().facts(app)
        return HostFacts(name=self.name, version=self.version(), django=django_integration())

    # --- simulate ----------------------------------------------------------------------------

    def check_broker(self, url: str) -> None:
        self.reach_redis(url)

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        from redis import Redis

        client = Redis.from_url(spec["broker"], socket_connect_timeout=BROKER_TIMEOUT,
                                socket_timeout=BROKER_TIMEOUT)  # fmt: skip
        try:
            return {"rq_new_locks": [lock for lock in LOCKS if not client.exists(lock)]}
        finally:
            client.close()

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        return [sys.executable, "-m", "pooldoctor.hosts.rq.worker"]

    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """One job per task, its id the task's, on the run's queue, as ``func.delay()`` or
        ``django_rq.enqueue`` would put it there: the project's job function by its dotted path,
        else pooldoctor's probe job with the probe's kind of task."""
        from redis import Redis
        from rq import Queue

        from pooldoctor.hosts.rq import jobs

        own = subject.kind == "task" and not subject.wrapper
        ids = [entry["task_id"] for entry in sent]
        # Before sending: the purge finds the run's job keys by these ids.
        (Path(spec["dir"]) / JOBS_FILE).write_text(json.dumps(ids))
        # The job's own timeout comes after pooldoctor's watchdog reports it hung.
        timeout = math.ceil(float(spec["task_timeout"]) * 2) + 5
        client = Redis.from_url(spec["broker"], socket_connect_timeout=BROKER_TIMEOUT)
        try:
            queue = Queue(spec["queue"], connection=client)
            for entry in sent:
                if own:
                    func, args, kwargs = (str(subject.target).replace(":", "."),
                                          tuple(subject.args), dict(subject.kwargs))  # fmt: skip
                elif subject.kind == "task":
                    func, args, kwargs = jobs.PATH, tuple(subject.args), dict(subject.kwargs)
                else:
                    func, args, kwargs = jobs.PATH, (entry["kind"],), {}
                queue.enqueue_call(func, args=args, kwargs=kwargs, job_id=entry["task_id"],
                                   timeout=timeout, result_ttl=0)  # fmt: skip
        finally:
            client.close()

    def purges(self, spec: Mapping[str, Any]) -> bool:
        return True

    def purge(self, spec: Mapping[str, Any]) -> None:
        """Every key the run made: the queue's (its registries, its workers', all named after
        the run's queue) and the jobs' (named after their ids); never raises."""
        with contextlib.suppress(Exception):
            purge_run(spec["broker"], spec["queue"], _job_ids(spec), spec.get("rq_new_locks", ()))

    def children_died(self, output: str) -> list[dict[str, str]]:
        return [{"name": f"work horse (job {m['job']})", "pid": m["pid"],
                 "how": _wait_status(int(m["how"]))}
                for m in HORSE_KILLED.finditer(output)]  # fmt: skip


def _wait_status(status: int) -> str:
    """A work horse's status as RQ logs it (os.wait4's), in words."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _job_ids(spec: Mapping[str, Any]) -> list[str]:
    """The run's job ids and its workers' names: what the keys the run made are named after."""
    directory = Path(spec["dir"])
    names: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        names += [str(i) for i in json.loads((directory / JOBS_FILE).read_text())]
    with contextlib.suppress(OSError):
        names += (directory / WORKERS_FILE).read_text().split()
    return names


def purge_run(broker: str, queue: str, names: Sequence[str], locks: Sequence[str] = ()) -> int:
    """Delete the keys of one run on ``broker``: any ``rq:`` key naming the queue or one of the
    ``names`` (its jobs' ids, its workers' names), the run's entries in RQ's sets of queues and
    workers, and the maintenance ``locks`` its workers took. Returns how many keys went."""
    from redis import Redis

    # Any: redis-py 5 types sync and asyncio replies as one union.
    client: Any = Redis.from_url(broker, socket_connect_timeout=BROKER_TIMEOUT,
                                 socket_timeout=BROKER_TIMEOUT)  # fmt: skip
    deadline = time.monotonic() + PURGE_LIMIT
    marks = [queue, *names]
    try:
        doomed: list[Any] = list(locks)
        for key in client.scan_iter(match="rq:*", count=1000):
            text = key.decode(errors="replace")
            if any(mark in text for mark in marks):
                doomed.append(key)
            if time.monotonic() > deadline:
                break
        client.srem("rq:queues", f"rq:queue:{queue}")
        workers = [m for m in client.smembers("rq:workers")
                   if any(mark.encode() in m for mark in marks)]  # fmt: skip
        if workers:
            client.srem("rq:workers", *workers)
        return int(client.delete(*doomed)) if doomed else 0
    finally:
        client.close()


def _reset_db_connections() -> Callable[[], None] | None:
    """django-rq's ``reset_db_connections`` (what ``rqworker`` runs before its worker starts),
    when the project runs django-rq (in its INSTALLED_APPS; RQ's own ``rq worker`` does not)."""
    from django.apps import apps

    if not apps.ready or not apps.is_installed("django_rq"):
        return None
    from django_rq.utils import reset_db_connections

    return reset_db_connections


def django_integration() -> str:
    """What django-rq does to Django's connections, read from its installed code: which of its
    worker commands reset them before the worker starts, what that reset calls, and whether
    anything of it runs around each job."""
    spec = importlib.util.find_spec("django_rq")
    if spec is None or spec.origin is None:
        return ("django-rq is not installed: RQ itself never touches Django's connections "
                "(nothing closes them around a job)")  # fmt: skip
    root = Path(spec.origin).parent
    version = metadata.version("django-rq")
    commands = sorted(
        path.stem for path in (root / "management" / "commands").glob("rqworker*.py")
        if "reset_db_connections()" in path.read_text()
    )  # fmt: skip
    calls = _calls_in(root / "utils.py", "reset_db_connections")
    per_job = sorted(
        path.name for path in root.glob("*.py")
        if re.search(r"close_old_connections|close_pool|request_finished\.send", path.read_text())
    )  # fmt: skip
    discards = "close_pool" in calls
    reset = ("discards the pool (close_pool())" if discards else
             "calls close() on each connection, which hands a pooled connection back and "
             "leaves the pool open")  # fmt: skip
    around = (f"something in {', '.join(per_job)} closes connections" if per_job else
              "nothing closes connections around each job: a fork worker's horse exits with "
              "what it opened (os._exit), a SimpleWorker keeps what a job left open")  # fmt: skip
    return (
        f"django-rq {version}'s {', '.join(commands) or 'worker commands'} reset Django's "
        f"connections once, before the worker starts (reset_db_connections: {reset}); {around}"
    )


def _calls_in(path: Path, function: str) -> set[str]:
    """The names a module's function calls (``c.close()`` counts as ``close``)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for call in ast.walk(node):
                if isinstance(call, ast.Call):
                    func = call.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    names.add(name)
    return names
