"""What ``simulate --runner NAME`` costs per task, runner by runner, over the same real workers
running the same tasks without pooldoctor's census.

For each runner, on its test project (``tests/projects/<runner>proj``), one fleet of the
runner's real worker command (``--workers 2``, its default kind of worker unless said) runs the
same 48 probe tasks through the built-in ``async-to-sync`` mode (clean: every task runs to the
end), twice per round, the order alternating so that drift on the machine hits both alike:

* **simulate**: the fleet as ``pooldoctor simulate --runner NAME`` runs it
  (:func:`pooldoctor.hosts.fleet.run_runner_fleet`): after every task the census (a garbage
  collection, the ledger's snapshot, the echo, leak sites and the timeline written to files);
* **baseline**: the same fleet with ``census=False``: the same worker command, the same runner
  hooks calling pooldoctor's worker side, the same broker, but after every task only a one-line
  done-marker, no ledger installed, no collection, no watchdog. It is what the runner costs
  with the tasks, its start and its stop, so the difference is the census alone.

Each fleet is timed from its start to its worker stopped (``FleetRecords.seconds``); the
per-task overhead is (simulate - baseline) / tasks. Celery's own comparison is
``benchmarks/simulate_overhead.py``.

Run from the repository root with the interpreter pooldoctor is installed in (Redis on
127.0.0.1:6379, database 7 by default; PostgreSQL as ``--database``)::

    python benchmarks/runner_overhead.py --repeat 3
    python benchmarks/runner_overhead.py --runner rq --runner huey --json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import (
    ROOT,
    add_database_option,
    admin_connection,
    environment,
    environment_lines,
    handle_signals,
    progress,
    stats,
    stray_sessions,
)

sys.path.insert(0, str(ROOT))

from pooldoctor.core import project
from pooldoctor.core.subjects import Subject
from pooldoctor.hosts import runner_host
from pooldoctor.hosts.fleet import FleetOptions, kill_all, run_runner_fleet

PROJECTS = ROOT / "tests" / "projects"
NAME = "pooldoctor-bench-runners"
MODE = "async-to-sync"
VERSIONS = ("django", "psycopg", "psycopg-pool", "asgiref", "rq", "django-rq", "dramatiq",
            "django-dramatiq", "huey", "django-tasks-db", "django-q2", "pooldoctor")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Runner:
    name: str
    project: str
    """tests/projects/<project>, whose settings module is <project>.settings."""
    broker: bool = True
    """False: the queue is in the database (writes allowed, migrations first)."""
    database_env: str | None = None
    """The environment variable the project's settings take its database name from."""


RUNNERS = (
    Runner("django-tasks", "tasksproj", broker=False, database_env="TASKSPROJ_DB"),
    Runner("rq", "rqproj"),
    Runner("dramatiq", "dramatiqproj"),
    Runner("huey", "hueyproj"),
    Runner("django-q", "djangoqproj"),
)


@contextlib.contextmanager
def scratch(database: str) -> Iterator[str]:
    """A database of the benchmark's own, dropped at the end with its sessions."""
    name = f"pooldoctor_bench_runners_{uuid.uuid4().hex[:8]}"
    with admin_connection(database, NAME) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(database)._replace(path=f"/{name}"))
    finally:
        with admin_connection(database, NAME) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(runner: Runner, url: str) -> None:
    cwd = PROJECTS / runner.project
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": f"{runner.project}.settings"}
    if runner.database_env:
        env[runner.database_env] = urlsplit(url).path.lstrip("/")
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0", "--pythonpath", str(cwd)],
                   cwd=cwd, env=env, check=True, timeout=300)  # fmt: skip


def fleet(runner: Runner, url: str, broker: str, tasks: int, workers: int, pool: str | None,
          census: bool, index: int) -> dict[str, Any]:  # fmt: skip
    host = runner_host(runner.name)
    spec = project.ProjectSpec(
        settings=f"{runner.project}.settings", alias="default", pythonpath=(),
        cwd=str(PROJECTS / runner.project), database=project.parse_database_url(url),
        read_only=runner.broker, allow_writes=not runner.broker,
    )  # fmt: skip
    options = FleetOptions(
        pool=pool or host.pools[0], workers=workers, tasks=tasks, warm_parent=False,
        django_fixup="auto", broker=broker, app=None, task_timeout=30.0, runner=runner.name,
        census=census,
    )  # fmt: skip
    records = run_runner_fleet(host, spec, Subject(MODE, "mode"), options,
                               uuid.uuid4().hex[:8], index)  # fmt: skip
    done = len(records.records)
    if done != tasks or records.stop_detail:
        side = "simulate" if census else "baseline"
        raise SystemExit(f"{runner.name} ({side}): {done} of {tasks} tasks came back: "
                         f"{records.stop_detail}\n{records.log[-2000:]}")  # fmt: skip
    return {"seconds": records.seconds, "pool": options.pool}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--runner", action="append", choices=[r.name for r in RUNNERS],
                        help="a runner to measure (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    handle_signals()
    chosen = [r for r in RUNNERS if not args.runner or r.name in args.runner]
    env = environment(args.database, NAME, VERSIONS)
    env["load_average"] = {"before": os.getloadavg()}
    results: dict[str, Any] = {}
    try:
        for runner in chosen:
            with scratch(args.database) as url:
                if not runner.broker:
                    migrate(runner, url)
                runs: dict[str, list[float]] = {"simulate": [], "baseline": []}
                pool = ""
                for round_ in range(args.repeat + 1):  # the first round warms up, untimed
                    order = [True, False] if round_ % 2 else [False, True]
                    for census in order:
                        found = fleet(runner, url, args.redis, args.tasks, args.workers, None,
                                      census, round_ * 2 + census)  # fmt: skip
                        pool = found["pool"]
                        if round_:
                            runs["simulate" if census else "baseline"].append(found["seconds"])
                        side = "simulate" if census else "baseline"
                        progress(f"{runner.name} round {round_} {side}: {found['seconds']} s")
                pairs = list(zip(runs["simulate"], runs["baseline"], strict=True))
                per_task = [(s - b) * 1000 / args.tasks for s, b in pairs]
                results[runner.name] = {
                    "pool": pool,
                    "simulate": stats(runs["simulate"]),
                    "baseline": stats(runs["baseline"]),
                    "ratio": stats([s / b for s, b in pairs], 2),
                    "overhead_ms_per_task": stats(per_task, 1),
                }
    finally:
        kill_all()
    env["load_average"]["after"] = os.getloadavg()
    left = stray_sessions(args.database, NAME, "pooldoctor:%")
    if args.json:
        print(json.dumps({"environment": env, "tasks": args.tasks, "workers": args.workers,
                          "results": results, "sessions_left": left}, indent=2))  # fmt: skip
    else:
        print(f"pooldoctor simulate --runner overhead: {args.tasks} {MODE} probe tasks per fleet, "
              f"--workers {args.workers}, {args.repeat} rounds (after one untimed)")  # fmt: skip
        print("\n".join(environment_lines(env)))
        print()
        print(f"{'runner':14}{'kind':12}{'simulate s':>12}{'baseline s':>12}{'ratio':>8}"
              f"{'ms/task':>10}  (medians; min-max per task)")  # fmt: skip
        for name, r in results.items():
            o = r["overhead_ms_per_task"]
            print(f"{name:14}{r['pool']:12}{r['simulate']['median']:>12.2f}"
                  f"{r['baseline']['median']:>12.2f}{r['ratio']['median']:>8.2f}"
                  f"{o['median']:>10.1f}  ({o['min']:.1f}-{o['max']:.1f})")  # fmt: skip
        if left:
            print(f"sessions left: {left}")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
