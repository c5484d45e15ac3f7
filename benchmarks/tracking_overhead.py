"""What recording every checkout's call stack costs: ``pooldoctor check`` with and without
``--no-tracking``, and the ledger's work per checkout, measured in-process.

Two levels, each with tracking on and off, interleaved so that drift on the machine hits both:

* **End to end.** ``pooldoctor check`` on pooldoctor/demo/leaky and pooldoctor/demo/fixed (7 modes
  and the fixture's two wrappers, 12 probe tasks each, ``--jobs 1`` by default so that no other
  subject process shares the CPU with a task) as a subprocess, ``--repeat`` times each way.
  Reported per task: the difference in wall time over the tasks the JSON report says ran (its
  ``tasks`` summed over subjects), and the difference in the tasks' own time (each census's
  ``seconds``: the task alone, census excluded, which is where a checkout's stack is captured). A
  task stopped at pool exhaustion is left out of the second figure: its time is the watchdog's
  0.25 s grace.
* **Per checkout, in-process.** Django set up here against ``--database`` with a pool, and
  async ORM tasks run through ``async_to_sync``, each ending with ``close_old_connections()`` on
  its ORM thread, so that each task checks one connection out of the pool and returns it. One
  ledger is installed throughout, its tracking switched on and off between blocks of ``--tasks``
  tasks (``--rounds`` pairs); reported: the time per task each way, the paired difference, and the
  time spent in the ledger's ``connection_created`` handler per checkout. Then
  ``pooldoctor.core.forensics.stacks.capture()`` alone, from plain sync code, from inside
  ``sync_to_async`` under ``async_to_sync``, and from inside ``sync_to_async`` in a
  ``ThreadSensitiveContext`` under ``asyncio.run`` (the recipe's way), each also under
  ``--depth`` extra frames, as in a Celery worker.

Run from anywhere with the interpreter pooldoctor is installed in::

    python benchmarks/tracking_overhead.py --repeat 5
    python benchmarks/tracking_overhead.py --part micro --rounds 40 --json

Every process it starts is stopped on the way out (Ctrl-C and SIGTERM included); at the end it
kills and reports any process of this run still alive (pooldoctor's subject processes included,
found by an environment marker) and any session of its own still open, and exits 1 if there was
one, or if tracking changed a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from _common import (
    ROOT,
    add_database_option,
    check_command,
    environment,
    environment_lines,
    handle_signals,
    interrupt,
    progress,
    stats,
    stray_sessions,
    sweep,
)

FIXTURES = ("leaky", "fixed")
ALIAS = "default"
APP_PREFIX = "pooldoctor-bench-tracking"
MARKER = "TRACKING_OVERHEAD_RUN"
EXHAUSTED = "TimeoutError: "  # the census error of a task the watchdog stopped
WAYS = {True: "tracking on", False: "tracking off"}
WARM_UP = 50  # untimed tasks first: the pool's connections, Django's and asgiref's caches


# --- end to end: pooldoctor check --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckRun:
    fixture: str
    tracking: bool
    seconds: float
    """Wall time of the whole ``pooldoctor check`` process."""
    tasks: int
    """Tasks run, summed over subjects (the JSON's ``tasks``)."""
    checkouts: int
    task_seconds: float
    """The tasks' own time (census ``seconds``), tasks stopped at exhaustion left out."""
    timed_tasks: int
    verdicts: dict[str, str]
    sites: int
    sites_named: int
    """Leak sites that name a frame of code (tracking off: none should)."""


def tracking_command(tracking: bool, jobs: int, database: str) -> list[str]:
    command = [*check_command(database), "--jobs", str(jobs)]
    return command if tracking else [*command, "--no-tracking"]


class Children:
    """The pooldoctor processes started and not reaped yet. Each carries
    ``TRACKING_OVERHEAD_RUN=<id>``, inherited by its subject processes, for :func:`sweep`."""

    def __init__(self, bench_id: str) -> None:
        self.env = {**os.environ, MARKER: bench_id}
        self._procs: dict[int, subprocess.Popen[str]] = {}

    def run(self, args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str, str]:
        proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)  # fmt: skip
        self._procs[proc.pid] = proc
        try:
            stdout, stderr = proc.communicate()
        finally:
            self.end(proc)
        return proc, stdout, stderr

    def end(self, proc: subprocess.Popen[str]) -> None:
        self._procs.pop(proc.pid, None)
        if proc.poll() is not None:
            return
        interrupt(proc)

    def end_all(self) -> None:
        for proc in list(self._procs.values()):
            self.end(proc)


def run_check(children: Children, fixture: str, tracking: bool, jobs: int,
              database: str) -> CheckRun:  # fmt: skip
    started = time.perf_counter()
    proc, stdout, stderr = children.run(
        tracking_command(tracking, jobs, database), ROOT / "pooldoctor" / "demo" / fixture
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1: a fixture wrapper leaks, as expected
        raise SystemExit(f"pooldoctor check exited with {proc.returncode}:\n{stderr.strip()}")
    report = json.loads(stdout)
    results = report["results"]
    timed = [
        c
        for r in results
        for c in r["evidence"]["census"]
        if not (c["error"] or "").startswith(EXHAUSTED)
    ]
    sites = [s for r in results for s in r.get("leak_sites", ())]
    return CheckRun(
        fixture=fixture,
        tracking=tracking,
        seconds=round(seconds, 3),
        tasks=sum(r["tasks"] for r in results),
        checkouts=sum(r.get("checkouts", 0) for r in results),
        task_seconds=round(sum(c["seconds"] for c in timed), 4),
        timed_tasks=len(timed),
        verdicts={r["subject"]: r["verdict"] for r in results},
        sites=len(sites),
        sites_named=sum(1 for s in sites if s["file"]),
    )


def end_to_end(children: Children, args: argparse.Namespace) -> dict[str, list[CheckRun]]:
    runs: dict[str, list[CheckRun]] = {f: [] for f in args.fixtures}
    progress("end to end: one untimed pooldoctor check per fixture")
    for fixture in args.fixtures:
        run_check(children, fixture, True, args.jobs, args.database)
    for n in range(args.repeat):
        # Alternate which goes first, so that a trend over the run favours neither.
        order = (True, False) if n % 2 == 0 else (False, True)
        for fixture in args.fixtures:
            for tracking in order:
                run = run_check(children, fixture, tracking, args.jobs, args.database)
                runs[fixture].append(run)
                progress(f"run {n + 1}/{args.repeat}: {fixture}, tracking "
                         f"{'on' if tracking else 'off'}: {run.seconds:.2f} s, {run.tasks} tasks, "
                         f"{run.task_seconds * 1000 / max(1, run.timed_tasks):.2f} ms/task "
                         "in the tasks")  # fmt: skip
    return runs


def summarize_end_to_end(runs: dict[str, list[CheckRun]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fixture, all_runs in runs.items():
        on = [r for r in all_runs if r.tracking]
        off = [r for r in all_runs if not r.tracking]
        tasks = statistics.median(r.tasks for r in all_runs)
        # Runs n (on) and n (off) ran back to back: compare them pairwise.
        wall = [(a.seconds - b.seconds) * 1000 / a.tasks for a, b in zip(on, off, strict=True)]
        in_task = [a.task_seconds * 1000 / a.timed_tasks - b.task_seconds * 1000 / b.timed_tasks
                   for a, b in zip(on, off, strict=True)]  # fmt: skip
        per_task_off = statistics.median(r.task_seconds * 1000 / r.timed_tasks for r in off)
        wall_off = statistics.median(r.seconds for r in off)
        out[fixture] = {
            "runs": len(on),
            "tasks": tasks,
            "checkouts": statistics.median(r.checkouts for r in all_runs),
            "timed_tasks": statistics.median(r.timed_tasks for r in all_runs),
            "wall_on": stats([r.seconds for r in on]),
            "wall_off": stats([r.seconds for r in off]),
            "in_task_ms_on": stats([r.task_seconds * 1000 / r.timed_tasks for r in on]),
            "in_task_ms_off": stats([r.task_seconds * 1000 / r.timed_tasks for r in off]),
            "wall_ms_per_task": stats(wall),
            "wall_percent": round(statistics.median(wall) * tasks / 1000 / wall_off * 100, 2),
            "in_task_ms_per_task": stats(in_task),
            "in_task_percent": round(statistics.median(in_task) / per_task_off * 100, 2),
            "sites_named_on": sorted({r.sites_named for r in on}),
            "sites_named_off": sorted({r.sites_named for r in off}),
        }
    return out


def end_to_end_problems(runs: dict[str, list[CheckRun]]) -> list[str]:
    problems = []
    for fixture, all_runs in runs.items():
        verdicts = {json.dumps(r.verdicts, sort_keys=True) for r in all_runs}
        if len(verdicts) > 1:
            problems.append(f"{fixture}: verdicts differ between runs: {sorted(verdicts)}")
        for run in all_runs:
            if not run.tracking and run.sites_named:
                problems.append(f"{fixture}: {run.sites_named} leak sites named without tracking")
            if run.tracking and run.sites and not run.sites_named:
                problems.append(f"{fixture}: no leak site named with tracking on")
    return problems


# --- per checkout, in-process ------------------------------------------------------------------


def set_up_django(database: str, bench_id: str) -> None:
    import django
    from django.conf import settings

    url = urlsplit(database)
    settings.configure(
        SECRET_KEY="tracking-overhead",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes"],
        DATABASES={
            ALIAS: {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": unquote(url.path.lstrip("/")) or "postgres",
                "USER": unquote(url.username or ""),
                "PASSWORD": unquote(url.password or ""),
                "HOST": url.hostname or "",
                "PORT": str(url.port or ""),
                "CONN_MAX_AGE": 0,
                "OPTIONS": {
                    "application_name": f"{APP_PREFIX}:{bench_id}",
                    "pool": {"min_size": 1, "max_size": 4, "timeout": 5},
                },
            }
        },
    )
    django.setup()


def close_pool() -> None:
    from django.db import connections

    connections[ALIAS].close()
    with contextlib.suppress(KeyError, AttributeError):
        connections[ALIAS].close_pool()


async def bench_task(model: Any) -> None:
    """One task: one async ORM query, then the cleanup on the ORM thread (a return)."""
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    await model.objects.acount()
    await sync_to_async(close_old_connections)()


class TimedLedger:
    """One ledger for the whole in-process part, its ``connection_created`` handler timed; tracking
    is switched between blocks (a ledger wraps its pool's putconn once, so it must not be
    replaced)."""

    def __init__(self) -> None:
        from pooldoctor.core import census

        self.ledger = census.Ledger(ALIAS, tracking=True)
        self.handler_ns: list[int] = []
        inner = self.ledger._on_connection_created

        def timed(sender: Any, connection: Any, **kwargs: Any) -> None:
            started = time.perf_counter_ns()
            inner(sender, connection, **kwargs)
            self.handler_ns.append(time.perf_counter_ns() - started)

        self.ledger._on_connection_created = timed  # type: ignore[method-assign]
        self.ledger.install()

    def block(self, tracking: bool, tasks: int) -> tuple[float, list[int], int]:
        """``tasks`` tasks: ms per task, the handler's time per checkout (ns), checkouts seen."""
        from asgiref.sync import async_to_sync

        from pooldoctor.core.probes.task import catalog_model

        model = catalog_model(ALIAS)
        run = async_to_sync(bench_task)
        self.ledger.tracking = tracking
        self.handler_ns = []
        before = self.ledger.checkouts
        gc.collect()
        started = time.perf_counter()
        for _ in range(tasks):
            run(model)
        per_task = (time.perf_counter() - started) * 1000 / tasks
        return per_task, self.handler_ns, self.ledger.checkouts - before

    def close(self) -> None:
        self.ledger.uninstall()


def deep(depth: int, func: Callable[[], Any]) -> Any:
    """``func()`` called under ``depth`` more frames, as a Celery worker's stack has."""
    return func() if depth <= 0 else deep(depth - 1, func)


def time_captures(count: int) -> tuple[float, int, list[str]]:
    """µs per ``capture()`` from here (the best of 5 runs of ``count``), the stack's length, and
    its function names."""
    from pooldoctor.core.forensics.stacks import capture

    captured = capture()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            capture()
        best = min(best, time.perf_counter() - started)
    return best * 1e6 / count, len(captured.stack), [f.function for f in captured.stack]


async def bench_coroutine(count: int) -> tuple[float, int, list[str]]:
    from asgiref.sync import sync_to_async

    return await sync_to_async(time_captures)(count)


async def bench_in_context(count: int) -> tuple[float, int, list[str]]:
    from asgiref.sync import ThreadSensitiveContext

    async with ThreadSensitiveContext():
        return await bench_coroutine(count)


def capture_cases(count: int, depth: int) -> dict[str, tuple[float, int, list[str]]]:
    from asgiref.sync import async_to_sync

    cases: dict[str, Callable[[], tuple[float, int, list[str]]]] = {
        "sync code, no asgiref": lambda: time_captures(count),
        "sync_to_async under async_to_sync": lambda: async_to_sync(bench_coroutine)(count),
        "sync_to_async in a ThreadSensitiveContext under asyncio.run": lambda: asyncio.run(
            bench_in_context(count)
        ),
    }
    out = {}
    for name, case in cases.items():
        out[name] = case()
        out[f"{name}, {depth} frames deeper"] = deep(depth, case)
    return out


def micro(args: argparse.Namespace, bench_id: str) -> dict[str, Any]:
    set_up_django(args.database, bench_id)
    per_task: dict[bool, list[float]] = {True: [], False: []}
    handler: dict[bool, list[int]] = {True: [], False: []}
    checkouts: dict[bool, int] = {True: 0, False: 0}
    timed = TimedLedger()
    try:
        progress(f"per checkout: {args.rounds} rounds of {args.tasks} tasks each way")
        timed.block(True, WARM_UP)
        for n in range(args.rounds):
            # Alternate which goes first, so that a trend over the run favours neither.
            for tracking in (True, False) if n % 2 == 0 else (False, True):
                ms, ns, seen = timed.block(tracking, args.tasks)
                per_task[tracking].append(ms)
                handler[tracking] += ns
                checkouts[tracking] += seen
            progress(f"round {n + 1}/{args.rounds}: tracking on {per_task[True][-1]:.3f} ms, "
                     f"off {per_task[False][-1]:.3f} ms per task")  # fmt: skip
        timed.close()
        captures = capture_cases(args.captures, args.depth)
    finally:
        close_pool()
    # Blocks n (on) and n (off) ran back to back: compare them pairwise.
    paired = [(on - off) * 1000 for on, off in zip(per_task[True], per_task[False], strict=True)]
    off_median = statistics.median(per_task[False])
    return {
        "tasks_per_block": args.tasks,
        "rounds": args.rounds,
        "per_task_ms": {WAYS[t]: stats(per_task[t]) for t in (True, False)},
        "tracking_us_per_task": stats(paired, 1),
        "tracking_percent": round(statistics.median(paired) / 1000 / off_median * 100, 2),
        "checkouts_per_task": {
            WAYS[t]: round(checkouts[t] / (args.tasks * args.rounds), 3) for t in (True, False)
        },
        "handler_us_per_checkout": {
            WAYS[t]: {
                "median": round(statistics.median(handler[t]) / 1000, 1),
                "p90": round(percentile(handler[t], 0.9) / 1000, 1),
            }
            for t in (True, False)
        },
        "capture_us": {
            name: {"us": round(us, 1), "frames": frames, "stitched": "bench_coroutine" in names}
            for name, (us, frames, names) in captures.items()
        },
        "captures_per_case": args.captures,
        "depth": args.depth,
    }


def micro_problems(result: dict[str, Any]) -> list[str]:
    problems = []
    for variant, per_task in result["checkouts_per_task"].items():
        if per_task != 1:
            problems.append(f"{variant}: {per_task} checkouts per task, expected exactly 1")
    for name, case in result["capture_us"].items():
        if name.startswith("sync_to_async") and not case["stitched"]:
            problems.append(f"capture() {name}: the awaiting coroutine is not on the stack")
    return problems


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


# --- report ------------------------------------------------------------------------------------


def cell(row: dict[str, float], unit: str = "", digits: int = 2) -> str:
    return (f"{row['median']:.{digits}f}{unit} ({row['min']:.{digits}f} to "
            f"{row['max']:.{digits}f})")  # fmt: skip


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Checkout tracking overhead",
        "",
        *environment_lines(result["environment"], markdown=True),
        f"- database: {result['database']}",
    ]
    e2e = result.get("end_to_end")
    if e2e:
        lines += [
            "",
            f"## End to end: `pooldoctor check` (`--jobs {result['jobs']}`), tracking on and off",
            "",
            "Median (min to max) of the runs; ms per task are paired differences (on minus off, "
            "runs back to back).",
            "",
            "| fixture | runs | tasks | checkouts | wall, tracking on | wall, off | wall: on - off "
            "per task | in the tasks, on | in the tasks, off | in the tasks: on - off per task |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for fixture, row in e2e.items():
            lines.append(
                f"| {fixture} | {row['runs']} | {row['tasks']:g} | {row['checkouts']:g} "
                f"| {cell(row['wall_on'], ' s')} | {cell(row['wall_off'], ' s')} "
                f"| {cell(row['wall_ms_per_task'], ' ms')} ({row['wall_percent']:+.1f} %) "
                f"| {cell(row['in_task_ms_on'], ' ms', 3)} "
                f"| {cell(row['in_task_ms_off'], ' ms', 3)} "
                f"| {cell(row['in_task_ms_per_task'], ' ms', 3)} "
                f"({row['in_task_percent']:+.1f} %) |"
            )
        lines += [
            "",
            "Leak sites naming a line, per run: "
            + "; ".join(
                f"{f}: tracking on {r['sites_named_on']}, off {r['sites_named_off']}"
                for f, r in e2e.items()
            ),
        ]
    m = result.get("micro")
    if m:
        lines += [
            "",
            f"## Per checkout, in-process ({m['rounds']} rounds of {m['tasks_per_block']} tasks "
            "each way)",
            "",
            "One async ORM query and `close_old_connections()` on the ORM thread per task, "
            "through `async_to_sync`: one checkout and one return per task. One ledger, its "
            "tracking switched between blocks.",
            "",
            "| | per task, median (min to max) | ledger's handler per checkout, median | p90 |",
            "| --- | --- | --- | --- |",
        ]
        for way in WAYS.values():
            handler = m["handler_us_per_checkout"][way]
            lines.append(
                f"| {way} | {cell(m['per_task_ms'][way], ' ms', 3)} "
                f"| {handler['median']:.1f} µs | {handler['p90']:.1f} µs |"
            )
        cost = m["tracking_us_per_task"]
        lines += [
            "",
            f"Tracking on against off, per task (paired blocks): {cell(cost, ' µs', 0)}, "
            f"{m['tracking_percent']:+.1f} % of a task.",
            "",
            f"`capture()` alone ({m['captures_per_case']} calls per case):",
            "",
            "| called from | µs per capture | frames on the stack | coroutine stitched in |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in m["capture_us"].items():
            stitched = "yes" if row["stitched"] else "-"
            lines.append(f"| {name} | {row['us']:.1f} | {row['frames']} | {stitched} |")
    leftovers = result["leftovers"]
    lines += [
        "",
        f"checks: {len(result['problems'])} problems"
        + "".join(f"\n  {p}" for p in result["problems"]),
        f"leftover processes: {len(leftovers['processes'])}, leftover sessions: "
        f"{len(leftovers['sessions'])}",
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time pooldoctor's checkout tracking: pooldoctor check with and without "
        "--no-tracking, and the ledger's work per checkout in-process.",
    )
    parser.add_argument(
        "--part",
        choices=["all", "e2e", "micro"],
        default="all",
        help="which level to measure (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        metavar="N",
        help="pooldoctor check runs per fixture and way (default: 5)",
    )
    parser.add_argument(
        "--fixtures",
        default=",".join(FIXTURES),
        metavar="LIST",
        help="comma-separated, of leaky,fixed (default: both)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="pooldoctor check --jobs (default: 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=20,
        metavar="N",
        help="in-process rounds, a block with tracking on and one off in each (default: 20)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=100,
        metavar="N",
        help="in-process tasks per block (default: 100)",
    )
    parser.add_argument(
        "--captures",
        type=int,
        default=2000,
        metavar="N",
        help="capture() calls per case (default: 2000)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=40,
        metavar="N",
        help="extra frames for the deep capture cases (default: 40)",
    )
    add_database_option(parser)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    args.fixtures = [f.strip() for f in args.fixtures.split(",") if f.strip()]
    if not set(args.fixtures) <= set(FIXTURES) or not args.fixtures:
        parser.error(f"--fixtures: choose from {', '.join(FIXTURES)}")
    for name in ("repeat", "rounds", "tasks", "captures", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handle_signals()
    bench_id = uuid.uuid4().hex[:8]
    children = Children(bench_id)
    result: dict[str, Any] = {"database": args.database, "jobs": args.jobs}
    problems: list[str] = []
    strays: list[str] = []
    try:
        env = environment(args.database, "tracking_overhead")
        load_before = os.getloadavg()
        if args.part in ("all", "e2e"):
            runs = end_to_end(children, args)
            result["end_to_end"] = summarize_end_to_end(runs)
            result["end_to_end_runs"] = {f: [dataclasses.asdict(r) for r in rs]
                                         for f, rs in runs.items()}  # fmt: skip
            problems += end_to_end_problems(runs)
        if args.part in ("all", "micro"):
            result["micro"] = micro(args, bench_id)
            problems += micro_problems(result["micro"])
    except KeyboardInterrupt:
        progress("tracking_overhead: interrupted; child processes stopped")
        return 130
    finally:
        children.end_all()
        strays = sweep(MARKER, bench_id, "tracking_overhead")
    env["load_average"] = {"before": load_before, "after": os.getloadavg()}
    result["environment"] = env
    # The in-process part's own sessions, still open after it closed its pool (no wildcard).
    sessions = stray_sessions(args.database, "tracking_overhead", f"{APP_PREFIX}:{bench_id}")
    result["leftovers"] = {"processes": strays, "sessions": sessions}
    result["problems"] = problems
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if problems or strays or result["leftovers"]["sessions"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
