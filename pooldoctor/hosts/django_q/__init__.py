"""django-q2: real ``qcluster`` clusters started, fed through Redis and stopped
(``simulate --runner django-q``: :mod:`.worker` is what they run), and the census a project's
cluster keeps for ``inspect --runner django-q`` (:mod:`.install`, public as
:mod:`pooldoctor.django_q`).

``manage.py qcluster`` loads the project (``django.setup()``), then forks (``multiprocessing``'s
fork context) a sentinel, which forks the workers (``Q_CLUSTER["workers"]``), a pusher and a
monitor: every process that runs tasks is a fork of the one that loaded the project, so there is
one kind of worker, ``cluster``. (``"sync": True`` runs a task inside ``async_task()``, in the
process that sends it: no worker at all.) Before forking the workers the sentinel calls
``connections.close_all()``, which hands a pooled connection back and leaves the pool open; each
worker calls ``close_old_connections()`` before each task and nothing after it; its per-process
hook is the ``post_spawn`` signal, sent first thing in every worker.

``check --task`` is not this host's: a django-q task is a plain function, sent by its dotted path
(``async_task("app.tasks.f")``), with no task object to tell it from any other function; the
in-process host runs it (what django-q adds around it is ``close_old_connections()`` before the
call). django_q is imported in this package only, inside the functions that use it (its
``conf`` reads the settings at import).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pooldoctor.errors import PooldoctorError, UsageError
from pooldoctor.hosts.base import HostFacts, RunnerHost, delete_redis_keys, glob_escape

SEND_TIMEOUT = 30.0
SEND_FILE = "django-q-send.json"
"""The tasks to send, written by :meth:`DjangoQHost.enqueue` for the cluster's main process."""
SENT_FILE = "django-q-sent.json"
"""Written by the cluster's main process once they are on the queue (or why they are not)."""
PROBE_PATH = "pooldoctor.hosts.django_q.probe.probe"
# Q_CLUSTER's entries the run sets itself (the rest of the project's stays): its queue on the
# run's Redis, no other broker, no scheduler (it would run the project's schedules on the run's
# queue), nothing cached or reported, no sync mode (a consumer's workers, not the sender's).
OWN_KEYS = ("name", "cluster_name", "redis", "django_redis", "orm", "sqs", "mongo", "mongo_db",
            "iron_mq", "broker_class", "ALT_CLUSTERS", "workers", "sync", "scheduler",
            "cached", "save_limit", "save_limit_per", "error_reporter", "timeout", "retry",
            "max_attempts", "ack_failures", "testing")  # fmt: skip
_DIED = re.compile(r"reincarnated worker (?P<name>\S+) after (?P<how>death|timeout)")

FIX_CODE = """\
discard the inherited pool in each cluster worker, with django-q's post_spawn signal (in an
AppConfig.ready(), so that qcluster connects it before it forks):

from django.db import connections
from django_q.signals import post_spawn

def discard_inherited_pool(sender, proc_name, **kwargs):
    # Sent first thing in every worker, forked from a process that may hold an open pool
    # (start-up code queried): drop it; this worker opens its own on its first query.
    connections["default"].close_pool()

post_spawn.connect(discard_inherited_pool, dispatch_uid="discard_inherited_pool")
"""


class DjangoQHost(RunnerHost):
    name = "django_q"
    runner_name = "django-q"
    title = "django-q2"
    distribution = "django-q2"
    pools = ("cluster",)
    forking = frozenset(("cluster",))
    fix = ("discard-inherited-pool-on-post-spawn", FIX_CODE)
    uses_broker = True

    # --- check --task: not this host's (see the module's docstring) ----------------------------

    def owns(self, obj: Any) -> bool:
        """Never: a django-q task is a plain function (the in-process host runs it)."""
        return False

    def runner(self, task: Any) -> Callable[..., Any]:
        raise TypeError("django-q tasks are plain functions: the in-process host runs them")

    def facts(self, app: Any = None) -> HostFacts:
        if not self.installed():
            return super().facts(app)
        return HostFacts(name=self.name, version=self.version(), concurrency=_concurrency(),
                         django=django_integration())  # fmt: skip

    # --- simulate --runner django-q ----------------------------------------------------------

    def check_broker(self, url: str) -> None:
        problem = too_old()
        if problem:
            raise UsageError(problem, "pip install 'django-q2>=1.10'")
        self.reach_redis(url)

    def prepare(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The run's ``Q_CLUSTER`` entries: its queue (the cluster's name: the Redis list
        ``django_q:<name>:q`` and the stats keys are named after it) on the given Redis, the
        run's number of workers, successes not saved, a task timeout after pooldoctor's own."""
        timeout = math.ceil(float(spec["task_timeout"]) * 2) + 5
        return {"q_cluster": {
            "name": spec["queue"], "redis": spec["broker"], "workers": int(spec["workers"]),
            "sync": False, "scheduler": False, "cached": False, "save_limit": -1,
            "timeout": timeout, "retry": timeout + 60, "ack_failures": True, "max_attempts": 1,
        }}  # fmt: skip

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        return [sys.executable, "-m", "pooldoctor.hosts.django_q.worker"]

    def enqueue(self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]],
                subject: Any) -> None:  # fmt: skip
        """The tasks, handed to the cluster's main process, which sends them with
        ``async_task()`` as the project does (signed with its SECRET_KEY, which pooldoctor never
        reads), each with the sent task id as django-q's own (set in a ``pre_enqueue``
        receiver): the project's function by its dotted path, else pooldoctor's probe with the
        probe's kind of task. Returns once they are on the queue."""
        own = subject.kind == "task" and not subject.wrapper
        tasks = []
        for entry in sent:
            if own:
                func, args, kwargs = (str(subject.target).replace(":", "."), list(subject.args),
                                      dict(subject.kwargs))  # fmt: skip
            elif subject.kind == "task":
                func, args, kwargs = PROBE_PATH, list(subject.args), dict(subject.kwargs)
            else:
                func, args, kwargs = PROBE_PATH, [entry["kind"]], {}
            tasks.append({"task_id": entry["task_id"], "func": func, "args": args,
                          "kwargs": kwargs})  # fmt: skip
        directory = Path(spec["dir"])
        tmp = directory / f".{SEND_FILE}.tmp"
        tmp.write_text(json.dumps(tasks))
        tmp.replace(directory / SEND_FILE)
        done = directory / SENT_FILE
        deadline = time.monotonic() + SEND_TIMEOUT
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not done.exists():
            raise PooldoctorError(f"the {self.title} cluster did not send the tasks within "
                                  f"{SEND_TIMEOUT:g} s")  # fmt: skip
        answer = json.loads(done.read_text())
        if answer.get("error"):
            raise PooldoctorError(f"the {self.title} cluster could not send the tasks: "
                                  f"{answer['error']}")  # fmt: skip

    def purges(self, spec: Mapping[str, Any]) -> bool:
        return True

    def purge(self, spec: Mapping[str, Any]) -> None:
        purge_keys(spec["broker"], spec["queue"])

    def children_died(self, output: str) -> list[dict[str, str]]:
        """The sentinel logs ``reincarnated worker NAME after death`` (or ``after timeout``)."""
        return [{"name": m["name"], "pid": "", "how": m["how"]} for m in _DIED.finditer(output)]


def too_old() -> str | None:
    """Why the installed django-q2 cannot be measured: the record of a task is taken at
    ``post_execute_in_worker``, the worker's own signal after a task (django-q2 1.10)."""
    if "post_execute_in_worker" in _source("signals"):
        return None
    try:
        version = metadata.version("django-q2")
    except metadata.PackageNotFoundError:
        return "--runner django-q: django-q2 is not installed"
    return (
        f"--runner django-q: django-q2 {version} has no post_execute_in_worker signal "
        "(1.10 added it): nothing of its worker's runs after a task for pooldoctor to measure"
    )


def purge_keys(broker: str, queue: str) -> int:
    """Delete the run's keys (its queue ``django_q:<queue>:q``, the cluster's stats
    ``django_q:<queue>:cluster:*``); never raises, bounded in time. How many went."""
    return delete_redis_keys(broker, [f"django_q:{glob_escape(queue)}:*"])


def first_receiver(signal: Any) -> None:
    """Move the receiver connected last to the front (Django calls them in order): a worker is
    seen as forked, and a task labelled, before the project's receivers run."""
    with signal.lock:
        signal.receivers.insert(0, signal.receivers.pop())
        signal.sender_receivers_cache.clear()


def task_label(func: Any, task: Mapping[str, Any]) -> str:
    """A django-q task's function as its worker names it: the dotted path it was sent as."""
    from django_q.utils import get_func_repr

    return task["func"] if isinstance(task["func"], str) else str(get_func_repr(func))


def _source(module: str) -> str:
    """An installed django_q module's source, read without importing it (its conf reads the
    settings at import)."""
    spec = importlib.util.find_spec("django_q")
    if spec is None or spec.origin is None:
        return ""
    path = Path(spec.origin).parent / f"{module}.py"
    try:
        return path.read_text()
    except OSError:
        return ""


def django_integration() -> str:
    """What django-q's cluster does to Django's connections, read from its installed code."""
    try:
        version = metadata.version("django-q2")
    except metadata.PackageNotFoundError:
        return "django-q2 is not installed"
    worker, cluster = _source("worker"), _source("cluster")
    close = worker.find("close_old_django_connections()")
    run = worker.find("pre_execute.send")
    after = worker.find("close_old_django_connections()", max(run, 0))
    if close == -1:
        per_task = "its worker does not call close_old_connections() around a task"
    elif close < run and after == -1:
        per_task = (
            "its worker calls close_old_connections() before each task and nothing after it "
            "(a worker keeps the connection its last task used until its next task starts)"
        )
    else:
        per_task = "its worker calls close_old_connections() around each task"
    fork = (
        "the sentinel calls connections.close_all() before forking the workers (a pooled "
        "connection goes back to a pool that stays open: the workers inherit it)"
        if "connections.close_all()" in cluster
        else "nothing closes connections before the workers are forked"
    )
    return f"django-q2 {version}: {per_task}; {fork}"


def _concurrency() -> str | None:
    with contextlib.suppress(Exception):
        from django.conf import settings

        conf = getattr(settings, "Q_CLUSTER", None)
        workers = conf.get("workers") if isinstance(conf, dict) else None
        return f"cluster -w {workers or 'cpu_count'}"
    return None
