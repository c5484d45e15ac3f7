"""What ``pooldoctor.celery.install(app)`` costs a worker per task.

The same prefork worker (``-c 1``) of tests/projects/inspectproj runs the same short clean task
(two async ORM reads) with and without ``install(app)``; each task is timed from send to result,
one at a time, several rounds, median. Then, in this process, the cost of one snapshot write (the
bookkeeping each prefork child does after every task).

    python benchmarks/inspect_overhead.py [--tasks 200] [--rounds 5] [--database URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

import _common

PROJECT = _common.ROOT / "tests" / "projects" / "inspectproj"
BROKER = "redis://127.0.0.1:6379/12"
NAME = "pooldoctor-bench-inspect"


def _env(database: str, installed: bool) -> dict[str, str]:
    path = os.pathsep.join([str(PROJECT), str(_common.ROOT / "pooldoctor" / "demo" / "leaky")])
    env = {**os.environ, "DATABASE_URL": database, "INSPECTPROJ_BROKER": BROKER,
           "INSPECTPROJ_BACKEND": BROKER, "PYTHONPATH": path}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["INSPECTPROJ_NO_INSTALL"] = "0" if installed else "1"
    return env


def per_task(database: str, installed: bool, tasks: int, rounds: int) -> list[float]:
    """Median ms per task of each round."""
    from celery import Celery

    token = uuid.uuid4().hex[:8]
    node, queue = f"bench-{token}@bench", f"bench-{token}"
    command = [str(Path(sys.executable).with_name("celery")), "-A", "inspectproj.celery:app",
               "worker", "-n", node, "-Q", queue, "-P", "prefork", "-c", "1", "-l", "warning",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=PROJECT, env=_env(database, installed),
                            stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    app = Celery("bench", broker=BROKER, backend=BROKER)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[node], timeout=0.5):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"worker {node} did not start")
        for i in range(20):  # warm-up: imports, the pool's first connection
            app.send_task("inspectproj.clean", args=[i], queue=queue).get(timeout=30)
        medians = []
        for _ in range(rounds):
            times = []
            for i in range(tasks):
                start = time.perf_counter()
                app.send_task("inspectproj.clean", args=[i], queue=queue).get(timeout=30)
                times.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(times))
        return medians
    finally:
        proc.send_signal(signal.SIGTERM)  # the worker's warm shutdown stops its child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        app.close()


def snapshot_cost(database: str, tracking: bool) -> float:
    """Microseconds per snapshot write in a process whose ledger saw a few clean checkouts."""
    os.environ.update(_env(database, installed=True))
    sys.path[:0] = os.environ["PYTHONPATH"].split(os.pathsep)
    os.environ["DJANGO_SETTINGS_MODULE"] = "inspectproj.settings"
    import django

    django.setup()
    from inspectproj.tasks import clean

    from pooldoctor.hosts.celery.install import Installation

    found = Installation("default", tracking)
    found.hostname = f"bench-{uuid.uuid4().hex[:8]}@snapshot"
    found.pool_kind = "prefork"
    found.ledger.install()
    found.start_process(forked=False)
    try:
        for i in range(5):
            clean(i)  # checkouts and returns for the ledger to report
        number = 2000
        seconds = timeit.timeit(found.write_snapshot, number=number)
        return seconds / number * 1e6
    finally:
        found.ledger.uninstall()
        found.on_process_shutdown()
        found.on_worker_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    _common.add_database_option(parser)
    args = parser.parse_args()
    _common.handle_signals()
    env = _common.environment(args.database, NAME, (*_common.VERSIONS, "redis"))
    env["load_average"] = {"before": os.getloadavg()}
    results: dict[str, Any] = {}
    for installed in (False, True, False, True):  # interleaved, against drift
        key = "installed" if installed else "plain"
        _common.progress(f"{key}: {args.rounds} rounds of {args.tasks} tasks")
        results.setdefault(key, []).extend(
            per_task(args.database, installed, args.tasks, args.rounds)
        )
    snap = snapshot_cost(args.database, tracking=True)
    env["load_average"]["after"] = os.getloadavg()
    plain, installed = statistics.median(results["plain"]), statistics.median(results["installed"])
    lines = [
        "# pooldoctor inspect: the worker side's cost per task",
        "",
        *_common.environment_lines(env, markdown=True),
        "",
        f"A prefork worker (`-c 1`) of tests/projects/inspectproj, Redis broker and result "
        f"backend, the clean task (two async ORM reads), one task at a time from send to result; "
        f"{len(results['plain'])} rounds of {args.tasks} tasks each way (interleaved), median of "
        f"the rounds' medians.",
        "",
        "| worker | ms per task (median) | min round | max round |",
        "|---|---|---|---|",
    ]
    for key in ("plain", "installed"):
        s = _common.stats(results[key])
        lines.append(f"| {key} | {s['median']} | {s['min']} | {s['max']} |")
    lines += [
        "",
        f"Difference: {installed - plain:+.3f} ms per task "
        f"({(installed / plain - 1) * 100:+.1f} %).",
        "",
        f"One snapshot write in-process (ledger with tracking, 5 clean tasks seen, JSON + "
        f"temp file + os.replace): {snap:.1f} µs.",
        "",
        f"Command: `python benchmarks/inspect_overhead.py --tasks {args.tasks} --rounds "
        f"{args.rounds}`",
    ]
    text = "\n".join(lines) + "\n"
    (_common.ROOT / "benchmarks" / "RESULTS-inspect.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
