"""What ``pooldoctor simulate`` costs over a plain Celery worker running the same tasks.

Measured on pooldoctor/demo/fixed (its wrapper is clean, so every task runs; pool max_size 4),
``--repeat`` times each, the two interleaved so that drift on the machine hits both alike:

* ``pooldoctor simulate --modes async-to-sync --wrapper mysite.celeryapp:async_task_wrapper
  --workers 2 --tasks 48 --format json`` as a subprocess: its wall time, and each subject's fleet
  ``seconds`` from the JSON report (worker start to worker stopped, census records included);
* the baseline: per subject, one plain ``celery worker`` (prefork, ``-c 2``, the same worker flags
  and the same kombu filesystem broker in a temporary directory) on a tiny app module written into
  that directory (:data:`APP_MODULE`). It loads the fixture's own Celery app and registers the same
  probe coroutine through the same mode or wrapper, with pooldoctor's ``make_probe_task`` and mode,
  but none of pooldoctor's census, ledger, watchdog or worker bootstrap. Its only addition is a
  done-marker file per task, written from ``task_postrun``. Both subjects' workers run at once, as
  simulate's two fleets do (``--jobs 2``). The same 48 tasks (same kinds, same token argument) are
  queued before the worker starts; a worker is timed from its start to its last done-marker and to
  its stop (SIGTERM to its group, SIGKILL after 3 s, as simulate stops its workers).

``pooldoctor simulate`` always runs at least one built-in mode besides the wrapper (an empty
``--modes`` means all of them), so both sides run two subjects: 96 tasks in all.

Run from anywhere with the interpreter pooldoctor is installed in::

    python benchmarks/simulate_overhead.py --repeat 3
    python benchmarks/simulate_overhead.py --repeat 5 --json

Every worker's process group is killed on the way out (Ctrl-C and SIGTERM included); at the end it
kills and reports any process of this run still alive (simulate's workers included, found by an
environment marker) and any baseline database session still open, and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATABASE,
    ROOT,
    SETTINGS,
    environment,
    environment_lines,
    handle_signals,
    interrupt,
    pooldoctor_command,
    progress,
    stats,
    stray_sessions,
    sweep,
)

from pooldoctor.hosts.celery.fleet import broker_conf

FIXTURE = ROOT / "pooldoctor" / "demo" / "fixed"
WRAPPER = "mysite.celeryapp:async_task_wrapper"
MODE = "async-to-sync"
# In the order simulate runs and reports them: modes first, then wrappers.
SUBJECTS = ((MODE, "mode"), (WRAPPER, "wrapper"))
FIXTURE_APP = "mysite.celeryapp:app"
ALIAS = "default"
# The fixture's database, for the server version and the stray-session check only.
ADMIN_DSN = DEFAULT_DATABASE
# simulate's embedded broker polls every 50 ms (pooldoctor/simulate/fleet.py, POLL); so does ours.
POLL = 0.05
STOP_GRACE = 3.0  # as fleet._stop: SIGTERM, then SIGKILL to the group after this long
BASELINE_LIMIT = 120.0  # a baseline worker that has not run every task by then has failed
APP_PREFIX = "pooldoctor-bench"
MARKER = "SIMULATE_OVERHEAD_RUN"
TASK_NAME = "bench.probe"
VERSIONS = ("django", "psycopg", "psycopg-pool", "asgiref", "celery", "kombu", "pooldoctor")

APP_MODULE = '''\
"""A plain Celery worker for benchmarks/simulate_overhead.py (generated; deleted after the run).

The fixture's own Celery app and the probe task through the same mode or wrapper as pooldoctor
simulate, and nothing else: no census, ledger or watchdog. Its one addition is a done-marker file
per task, written in task_postrun after the Django fix-up's own handler.
"""

import importlib
import json
import os
from pathlib import Path

SPEC = json.loads(Path(__file__).with_name("spec.json").read_text())
DONE = Path(SPEC["done"])
os.environ["DJANGO_SETTINGS_MODULE"] = SPEC["settings"]  # before the app: its Django fix-up

from celery import signals  # noqa: E402
from django.conf import settings  # noqa: E402

# Only so that the benchmark can tell its own sessions apart (the stray-session check).
entry = settings.DATABASES[SPEC["alias"]]
entry.setdefault("OPTIONS", {})["application_name"] = SPEC["application_name"]


def attr(spec):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


app = attr(SPEC["app"])
conf = dict(SPEC["celery_conf"])
# The app reads CELERY_* settings, and CELERY_BROKER_URL outranks broker_url: set both spellings.
conf.update({f"CELERY_{key.upper()}": value for key, value in SPEC["celery_conf"].items()})
app.conf.update(conf)

import django  # noqa: E402

django.setup()

from pooldoctor.core.probes.task import make_probe_task  # noqa: E402

if SPEC["kind"] == "mode":
    from pooldoctor.core.probes import get_mode

    mode = get_mode(SPEC["subject"])
    run = mode.wrap(make_probe_task(SPEC["alias"], thread_sensitive=mode.thread_sensitive))
else:
    run = attr(SPEC["subject"])(make_probe_task(SPEC["alias"]))
app.task(name=SPEC["task"], ignore_result=True)(run)


def mark_done(task_id="", state="", **kwargs):
    tmp = DONE / f"{task_id}.tmp"
    tmp.write_text(state)
    tmp.replace(DONE / f"{task_id}.done")


def connect_marker(**kwargs):
    # Connected at worker_init so that it runs after the fix-up's task_postrun handler.
    signals.task_postrun.connect(mark_done, weak=False)


signals.worker_init.connect(connect_marker, weak=False)
'''


# --- results -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulateRun:
    seconds: float
    """Wall time of the whole ``pooldoctor simulate`` process."""
    report_seconds: float
    """simulate's own ``seconds`` (its run, without interpreter start-up and rendering)."""
    fleets: dict[str, float]
    """Per subject, the fleet's ``seconds`` from the JSON report."""
    problems: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BaselineWorker:
    subject: str
    to_done: float
    """From the start (temporary directory, queuing the tasks, starting the worker) to the last
    done-marker."""
    to_stopped: float
    """From the start to the worker's process group gone: the span of simulate's fleet seconds."""
    tasks_done: int
    failed: int
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class BaselineRun:
    seconds: float
    """From the first worker's start (queuing included) to the last worker stopped."""
    workers: tuple[BaselineWorker, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{w.subject}: {w.problem}" for w in self.workers if w.problem)


# --- processes ---------------------------------------------------------------------------------


class Children:
    """Every process the benchmark started and has not reaped yet.

    Each gets ``SIMULATE_OVERHEAD_RUN=<id>`` in its environment, which its own children inherit,
    so :func:`sweep` can find anything of ours that outlived its parent (simulate's workers run in
    their own sessions, out of reach of a process-group kill from here).
    """

    def __init__(self, bench_id: str) -> None:
        self.env = {**os.environ, MARKER: bench_id}
        self._procs: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}
        self._lock = threading.Lock()

    def start(
        self, args: list[str], *, own_session: bool, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        env = {**self.env, **kwargs.pop("env", {})}
        proc = subprocess.Popen(
            args, cwd=FIXTURE, stdin=subprocess.DEVNULL, start_new_session=own_session, env=env,
            **kwargs,
        )  # fmt: skip
        with self._lock:
            self._procs[proc.pid] = (proc, own_session)
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop a baseline worker the way simulate stops its own (fleet._stop)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
        self.end(proc)

    def end(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            own_session = self._procs.pop(proc.pid, (proc, True))[1]
        if own_session:
            # A baseline worker: its whole group goes (prefork children included), even when the
            # parent is already gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            return
        interrupt(proc)  # pooldoctor itself, and through it its workers

    def end_all(self) -> None:
        with self._lock:
            procs = [proc for proc, _ in self._procs.values()]
        for proc in procs:
            self.end(proc)


# --- pooldoctor simulate -----------------------------------------------------------------------


def simulate_command(tasks: int, workers: int) -> list[str]:
    return [*pooldoctor_command(), "simulate", "--settings", SETTINGS, "--wrapper", WRAPPER,
            "--modes", MODE, "--workers", str(workers), "--tasks", str(tasks),
            "--format", "json"]  # fmt: skip


def run_simulate(children: Children, tasks: int, workers: int) -> SimulateRun:
    started = time.perf_counter()
    proc = children.start(
        simulate_command(tasks, workers),
        own_session=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = proc.communicate()
    finally:
        children.end(proc)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"pooldoctor simulate exited with {proc.returncode}: {tail}")
    report = json.loads(stdout)
    problems = []
    fleets = {}
    for result in report["results"]:
        fleets[result["subject"]] = result["seconds"]
        expected_failures = failing_tasks(tasks)
        if (
            result["verdict"] != "clean"
            or result["tasks"] != tasks
            or result["tasks_lost"]
            or result["failed_tasks"] != expected_failures
            or result["stop_detail"]
        ):
            problems.append(
                f"{result['subject']}: verdict {result['verdict']}, {result['tasks']} tasks, "
                f"{result['failed_tasks']} failed (expected {expected_failures}), "
                f"{result['tasks_lost']} lost, stop: {result['stop_detail']}"
            )
    if list(fleets) != [name for name, _ in SUBJECTS]:
        problems.append(f"subjects were {list(fleets)}, expected {[n for n, _ in SUBJECTS]}")
    return SimulateRun(round(seconds, 3), report["seconds"], fleets, tuple(problems))


def failing_tasks(tasks: int) -> int:
    from pooldoctor.core.probes.task import OK, schedule

    return sum(kind != OK for kind in schedule(tasks))


# --- the baseline: plain celery workers --------------------------------------------------------


def baseline_worker(
    children: Children, subject: str, kind: str, index: int, tasks: int, workers: int, bench_id: str
) -> BaselineWorker:
    """One plain worker for one subject: queue the tasks, start it, wait for every marker, stop."""
    from celery import Celery

    from pooldoctor.core.probes.task import schedule

    started = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="simulate-overhead-"))
    done = directory / "done"
    done.mkdir()
    queue = f"overhead-{bench_id}-{index}"
    conf = {**broker_conf("embedded", directory), "task_default_queue": queue,
            "worker_hijack_root_logger": False}  # fmt: skip
    spec = {
        "done": str(done),
        "settings": SETTINGS,
        "alias": ALIAS,
        "app": FIXTURE_APP,
        "subject": subject,
        "kind": kind,
        "task": TASK_NAME,
        "celery_conf": conf,
        "application_name": f"{APP_PREFIX}:{bench_id}:{index}",
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    (directory / "overhead_app.py").write_text(APP_MODULE)
    # The same tasks simulate sends: the schedule's kinds, each with a token (the probe then also
    # echoes the token through its connection, as under simulate).
    producer = Celery("simulate-overhead-producer", set_as_current=False)
    producer.conf.update(conf)
    with producer.connection_for_write() as connection:
        for kind_ in schedule(tasks):
            producer.send_task(TASK_NAME, args=[kind_, uuid.uuid4().hex],
                               task_id=uuid.uuid4().hex, queue=queue,
                               connection=connection)  # fmt: skip
    log = (directory / "worker.log").open("wb")
    proc = children.start(
        [sys.executable, "-m", "celery", "-A", "overhead_app", "worker",
         "--pool", "prefork", "--concurrency", str(workers), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--hostname", f"{queue}@%h", "--queues", queue],
        own_session=True,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(directory),
                                                         os.environ.get("PYTHONPATH")]))},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    problem = None
    try:
        deadline = started + BASELINE_LIMIT
        while True:
            finished = len(list(done.glob("*.done")))
            if finished >= tasks:
                break
            if proc.poll() is not None:
                problem = f"the worker exited with code {proc.returncode} after {finished} tasks"
                break
            if time.perf_counter() > deadline:
                problem = f"{tasks - finished} tasks not done within {BASELINE_LIMIT:g} s"
                break
            time.sleep(POLL)
        to_done = time.perf_counter() - started
    finally:
        children.stop_worker(proc)
        log.close()
    to_stopped = time.perf_counter() - started
    states = [p.read_text() for p in done.glob("*.done")]
    failed = sum(state != "SUCCESS" for state in states)
    if problem is None and failed != failing_tasks(tasks):
        problem = f"{failed} tasks failed, expected {failing_tasks(tasks)}"
    if problem:
        lines = (directory / "worker.log").read_text(errors="replace").strip().splitlines()
        problem += f": {lines[-1] if lines else 'no output'}"
    shutil.rmtree(directory, ignore_errors=True)
    return BaselineWorker(subject, round(to_done, 3), round(to_stopped, 3), len(states), failed,
                          problem)  # fmt: skip


def run_baseline(children: Children, tasks: int, workers: int, bench_id: str) -> BaselineRun:
    """Both subjects' plain workers at once, as simulate runs its two fleets (``--jobs 2``)."""
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=len(SUBJECTS))
    try:
        futures = [
            pool.submit(baseline_worker, children, name, kind, i, tasks, workers, bench_id)
            for i, (name, kind) in enumerate(SUBJECTS)
        ]
        results = tuple(f.result() for f in futures)
    finally:
        # On Ctrl-C the threads are still polling: their workers go first, then the threads see
        # them gone and return.
        children.end_all()
        pool.shutdown(wait=True, cancel_futures=True)
    return BaselineRun(round(time.perf_counter() - started, 3), results)


# --- report ------------------------------------------------------------------------------------


def summarize(
    env: dict[str, Any],
    tasks: int,
    workers: int,
    sims: list[SimulateRun],
    bases: list[BaselineRun],
    leftovers: dict[str, list[str]],
) -> dict[str, Any]:
    total = tasks * len(SUBJECTS)
    whole = {
        "simulate": {"runs": len(sims), **stats([s.seconds for s in sims])},
        "baseline": {"runs": len(bases), **stats([b.seconds for b in bases])},
        # Run n of simulate against run n of the baseline: they ran back to back.
        "ratio": stats([s.seconds / b.seconds for s, b in zip(sims, bases, strict=True)], 2),
        "overhead_ms_per_task": stats(
            [(s.seconds - b.seconds) / total * 1000 for s, b in zip(sims, bases, strict=True)], 1
        ),
    }
    subjects: dict[str, Any] = {}
    for index, (name, _) in enumerate(SUBJECTS):
        fleet = [s.fleets.get(name, float("nan")) for s in sims]
        stopped = [b.workers[index].to_stopped for b in bases]
        subjects[name] = {
            "simulate_fleet": stats(fleet),
            "baseline_to_done": stats([b.workers[index].to_done for b in bases]),
            "baseline_to_stopped": stats(stopped),
            "ratio": stats([f / s for f, s in zip(fleet, stopped, strict=True)], 2),
            "overhead_ms_per_task": stats(
                [(f - s) / tasks * 1000 for f, s in zip(fleet, stopped, strict=True)], 1
            ),
        }
    return {
        "environment": env,
        "fixture": "pooldoctor/demo/fixed",
        "subjects": [name for name, _ in SUBJECTS],
        "tasks_per_subject": tasks,
        "worker_concurrency": workers,
        "command": simulate_command(tasks, workers),
        "whole": whole,
        "per_subject": subjects,
        "simulate_runs": [dataclasses.asdict(s) for s in sims],
        "baseline_runs": [dataclasses.asdict(b) for b in bases],
        "problems": [p for run in [*sims, *bases] for p in run.problems],
        "leftovers": leftovers,
    }


def render(result: dict[str, Any], tasks: int, workers: int) -> str:
    whole, total = result["whole"], tasks * len(SUBJECTS)
    lines = [
        f"pooldoctor simulate overhead on pooldoctor/demo/fixed: {len(SUBJECTS)} subjects "
        f"({', '.join(result['subjects'])}), {tasks} probe tasks each, prefork -c {workers}",
        *environment_lines(result["environment"]),
        "simulate  " + " ".join(result["command"][1:]) + "  (cwd pooldoctor/demo/fixed)",
        "baseline  per subject a plain celery worker (fixture's app, same flags and broker, "
        "tasks queued first), both at once",
        "",
        f"{'whole run (seconds)':40}{'runs':>5}{'median':>10}{'min':>10}{'max':>10}",
    ]
    rows = [
        ("pooldoctor simulate, process wall time", whole["simulate"], "s"),
        ("baseline, first start to last stop", whole["baseline"], "s"),
        ("ratio simulate/baseline (per run)", {**whole["ratio"], "runs": ""}, "x"),
        (
            f"overhead per task ({total} tasks), ms",
            {**whole["overhead_ms_per_task"], "runs": ""},
            "",
        ),
    ]
    for label, row, unit in rows:
        lines.append(
            f"{label:40}{row['runs']!s:>5}{row['median']:>9.2f}{unit or ' '}"
            f"{row['min']:>9.2f}{unit or ' '}{row['max']:>9.2f}{unit or ' '}".rstrip()
        )
    lines += ["", "per subject (median seconds; min-max):"]
    header = (
        f"{'subject':38}{'simulate fleet':>20}{'baseline to done':>20}{'to stopped':>20}"
        f"{'ratio':>7}{'ms/task':>9}"
    )
    lines.append(header)
    for name, row in result["per_subject"].items():
        lines.append(
            f"{name:38}{cell(row['simulate_fleet']):>20}{cell(row['baseline_to_done']):>20}"
            f"{cell(row['baseline_to_stopped']):>20}{row['ratio']['median']:>6.2f}x"
            f"{row['overhead_ms_per_task']['median']:>9.1f}"
        )
    lines += [
        "(ratio and ms/task: simulate's fleet seconds against the baseline worker's "
        "start-to-stopped, run by run)",
        "",
        f"checks: {len(result['problems'])} problems"
        + "".join(f"\n  {p}" for p in result["problems"]),
        f"leftover processes: {len(result['leftovers']['processes'])}, leftover baseline "
        f"sessions: {len(result['leftovers']['sessions'])}",
    ]
    return "\n".join(lines)


def cell(row: dict[str, float]) -> str:
    return f"{row['median']:.2f} ({row['min']:.2f}-{row['max']:.2f})"


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time pooldoctor simulate on pooldoctor/demo/fixed against plain Celery "
        "workers running the same tasks through the same mode and wrapper, without pooldoctor.",
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="default: 3")
    parser.add_argument("--tasks", type=int, default=48, metavar="N", help="per subject (48)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="-c (default: 2)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tasks < 2:
        parser.error("--tasks must be at least 2 (simulate's minimum)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handle_signals()
    bench_id = uuid.uuid4().hex[:8]
    children = Children(bench_id)
    sims: list[SimulateRun] = []
    bases: list[BaselineRun] = []
    try:
        env = environment(ADMIN_DSN, "simulate_overhead", VERSIONS)
        import celery  # noqa: F401  # the producer's import is not the baseline's cost

        load_before = os.getloadavg()
        progress("warm-up: one untimed run of each")
        run_simulate(children, args.tasks, args.workers)
        run_baseline(children, args.tasks, args.workers, bench_id)
        for n in range(args.repeat):
            sims.append(run_simulate(children, args.tasks, args.workers))
            bases.append(run_baseline(children, args.tasks, args.workers, bench_id))
            progress(
                f"run {n + 1}/{args.repeat}: simulate {sims[-1].seconds:.2f} s, "
                f"baseline {bases[-1].seconds:.2f} s"
            )
    except KeyboardInterrupt:
        progress("simulate_overhead: interrupted; worker processes killed")
        return 130
    finally:
        children.end_all()
        strays = sweep(MARKER, bench_id, "simulate_overhead")
    env["load_average"] = {"before": load_before, "after": os.getloadavg()}
    # simulate's own sessions carry a run id the benchmark cannot see, so they are covered by
    # sweep() instead: a session outlives its client process by at most a moment.
    sessions = stray_sessions(ADMIN_DSN, "simulate_overhead", f"{APP_PREFIX}:{bench_id}:%")
    leftovers = {"processes": strays, "sessions": sessions}
    result = summarize(env, args.tasks, args.workers, sims, bases, leftovers)
    print(json.dumps(result, indent=2) if args.json else render(result, args.tasks, args.workers))
    return 1 if result["problems"] or strays or leftovers["sessions"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
