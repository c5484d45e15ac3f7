"""The README's table (runner, kind of worker, pattern, verdict), measured: each row is a real
``pooldoctor simulate --runner`` result, and README.md holds exactly :func:`render_matrix`.

Rows of one runner that share the run's options (kind of worker, warmed parent) are subjects of one
invocation (``--task``, ``--wrapper`` and ``--modes`` add up), run once per module and only when a
selected test asks for it. The verdicts are those the runners' own tests establish (tests/runners/
<runner>/test_simulate.py), on both CI environments.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import PROJECTS, ROOT, pooldoctor, scratch_database

from .fleets import reachable_redis

REDIS = "redis://127.0.0.1:6379/{db}"
SMALL = ("--workers", "2", "--tasks", "6", "--task-timeout", "3")
START, END = "<!-- runner-matrix:start -->", "<!-- runner-matrix:end -->"
FOOTER = ("Asserted by `tests/runners/test_matrix.py` on every CI run, on both CI environments "
          "(newest and lowest supported versions).")  # fmt: skip
FIX = "fix"
"""The subject of a fix row: the report's ``fix.measured``, for ``fix.applied_to``."""
IMPORT_QUERY_MODULE = "matrix_import_query"
IMPORT_QUERY = f"{IMPORT_QUERY_MODULE}.count_databases"


@dataclasses.dataclass(frozen=True)
class Runner:
    """How the matrix runs one runner's project."""

    option: str
    title: str
    project: Path
    settings: str
    options: tuple[str, ...]
    """What every run of it takes (its broker, its database's writes)."""


RUNNERS = {
    "django-tasks": Runner("django-tasks", "Django's Tasks (django-tasks-db)",
                           PROJECTS / "tasksproj", "tasksproj.settings", ("--allow-writes",)),
    "rq": Runner("rq", "RQ (django-rq)", PROJECTS / "rqproj", "rqproj.settings",
                 ("--broker", REDIS.format(db=3))),
    "dramatiq": Runner("dramatiq", "Dramatiq (django-dramatiq)", PROJECTS / "dramatiqproj",
                       "dramatiqproj.settings", ("--broker", REDIS.format(db=4))),
    "huey": Runner("huey", "Huey (djhuey)", PROJECTS / "hueyproj", "hueyproj.settings",
                   ("--broker", REDIS.format(db=5))),
    "django-q": Runner("django-q", "django-q2", PROJECTS / "djangoqproj", "djangoqproj.settings",
                       ("--broker", REDIS.format(db=6))),
}  # fmt: skip

WORKERS = {
    ("django-tasks", "db_worker"): "`db_worker`: one task at a time",
    ("rq", "fork"): "`fork`: a work horse forked per job",
    ("rq", "simple"): "`simple`: jobs in the worker process",
    ("rq", "pool"): "`pool`: `rqworker-pool` forks the workers",
    ("dramatiq", "processes"): "`processes`: `--processes 2 --threads 1`",
    ("dramatiq", "threads"): "`threads`: `--processes 1 --threads 2`",
    ("huey", "thread"): "`thread`: `-k thread -w 2`",
    ("huey", "process"): "`process`: `-k process -w 2`",
    ("django-q", "cluster"): "`cluster`: `qcluster`, 2 workers forked by its sentinel",
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One row of the table, and how it is measured."""

    runner: str
    worker: str
    """The kind of worker (``--pool``)."""
    pattern: str
    args: tuple[str, ...]
    """What makes the subject (``--task X``, ``--wrapper W``, ``--modes M``)."""
    subject: str
    """The result whose verdict is read; for a fix row, the report's ``fix.applied_to``."""
    verdict: str
    prefork: bool = False
    fix: bool = False

    @property
    def run(self) -> tuple[str, str, bool]:
        """Rows with the same run options are subjects of one invocation."""
        return (self.runner, self.worker, self.prefork)

    @property
    def id(self) -> str:
        what = "fix" if self.fix else ".".join(self.subject.replace(":", ".").split(".")[-2:])
        return f"{self.runner}-{self.worker}{'-prefork' if self.prefork else ''}-{what}"


TASKS_SYNC, TASKS_LEAKY, TASKS_FIXED = (f"tasksproj.tasks.{n}" for n in (
    "count_databases", "count_databases_async", "count_databases_async_fixed"))  # fmt: skip
RQ_JOB, RQ_WRAPPER = "rqproj.jobs.count_databases", "rqproj.wrappers:run_async"
DQ_ACTOR, DQ_LEAKY, DQ_ASYNC = (f"dramatiqproj.tasks.{n}" for n in (
    "count_databases", "leaky", "count_databases_async"))  # fmt: skip
DQ_WRAPPER = "dramatiqproj.wrappers:async_task_wrapper"
HUEY_TASK = "hueyproj.tasks.count_databases"
HUEY_WRAPPER = "hueyproj.wrappers:async_task_wrapper"
HUEY_PLAIN = "hueyproj.tasks.count_databases_plain"
DJQ_TASK, DJQ_WRAPPER = (
    "djangoqproj.tasks.count_databases",
    "djangoqproj.wrappers:async_task_wrapper",
)
A2S = "async-to-sync"
MODE = ("--modes", A2S)


def task(path: str) -> tuple[str, ...]:
    return ("--task", path)


def wrapper(spec: str) -> tuple[str, ...]:
    return ("--wrapper", spec)


SCENARIOS = (
    Scenario("django-tasks", "db_worker", "sync ORM task, the worker's Django integration "
             "(`close_old_connections()` around each task)", task(TASKS_SYNC), TASKS_SYNC,
             "clean"),
    Scenario("django-tasks", "db_worker", "async task via `sync_to_async(thread_sensitive=False)`",
             task(TASKS_LEAKY), TASKS_LEAKY, "leak"),
    Scenario("django-tasks", "db_worker", "async task via `sync_to_async()` (thread-sensitive, "
             "its default)", task(TASKS_FIXED), TASKS_FIXED, "clean"),
    Scenario("rq", "fork", "sync ORM job, django-rq's integration (it closes connections once, "
             "before the worker starts)", task(RQ_JOB),
             RQ_JOB, "pinned"),
    Scenario("rq", "fork", "async ORM code through `async_to_sync()`, then "
             "`close_old_connections()`", MODE, A2S, "clean"),
    Scenario("rq", "simple", "the blog's leaking async recipe (wrapper)", wrapper(RQ_WRAPPER),
             RQ_WRAPPER, "leak"),
    Scenario("rq", "fork", "query in the parent before the fork (`--prefork`)", MODE, A2S,
             "unsafe", prefork=True),
    Scenario("rq", "fork", "the same, with RQ's fix: a `Worker` whose `main_work_horse()` "
             "discards the inherited pool", MODE, A2S, "clean", prefork=True, fix=True),
    Scenario("rq", "pool", "query in the parent before the fork (`--prefork`)", MODE, A2S,
             "unsafe", prefork=True),
    Scenario("rq", "pool", "the same, with RQ's fix", MODE, A2S, "clean", prefork=True, fix=True),
    Scenario("dramatiq", "processes", "sync ORM actor, django-dramatiq's "
             "`DbConnectionsMiddleware`", task(DQ_ACTOR), DQ_ACTOR, "clean"),
    Scenario("dramatiq", "processes", "an actor on the blog's leaking async recipe",
             task(DQ_LEAKY), DQ_LEAKY, "leak"),
    Scenario("dramatiq", "processes", "the blog's leaking async recipe (wrapper)",
             wrapper(DQ_WRAPPER), DQ_WRAPPER, "leak"),
    Scenario("dramatiq", "processes", "a query at import of the tasks module: each process "
             "imports it after the fork (nothing inherited), its main thread keeps the "
             "connection", task(IMPORT_QUERY), IMPORT_QUERY, "pinned"),
    Scenario("dramatiq", "threads", "sync ORM actor, django-dramatiq's "
             "`DbConnectionsMiddleware`", task(DQ_ACTOR), DQ_ACTOR, "clean"),
    Scenario("dramatiq", "threads", "`async def` actor on the `AsyncIO` middleware's event loop "
             "thread", task(DQ_ASYNC), DQ_ASYNC, "pinned"),
    Scenario("huey", "thread", "sync ORM task, `@db_task` (djhuey's `close_db()`)",
             task(HUEY_TASK), HUEY_TASK, "clean"),
    Scenario("huey", "thread", "sync ORM task, a plain `@task()` (no `close_db()`): each worker "
             "thread keeps its connection", task(HUEY_PLAIN), HUEY_PLAIN, "pinned"),
    Scenario("huey", "thread", "the blog's leaking async recipe (wrapper)", wrapper(HUEY_WRAPPER),
             HUEY_WRAPPER, "leak"),
    Scenario("huey", "process", "query in the parent before the fork (`--prefork`)",
             task(HUEY_TASK), HUEY_TASK, "unsafe", prefork=True),
    Scenario("huey", "process", "the same, with Huey's fix: an `@on_startup()` hook that "
             "discards the inherited pool", task(HUEY_TASK), HUEY_TASK, "clean", prefork=True,
             fix=True),
    Scenario("django-q", "cluster", "sync ORM task, django-q's integration "
             "(`close_old_connections()` before each task, nothing after)", task(DJQ_TASK),
             DJQ_TASK, "pinned"),
    Scenario("django-q", "cluster", "async ORM code through `async_to_sync()`, then "
             "`close_old_connections()`", MODE, A2S, "clean"),
    Scenario("django-q", "cluster", "the blog's leaking async recipe (wrapper)",
             wrapper(DJQ_WRAPPER), DJQ_WRAPPER, "leak"),
    Scenario("django-q", "cluster", "query in the parent before the fork (`--prefork`)", MODE,
             A2S, "unsafe", prefork=True),
    Scenario("django-q", "cluster", "the same, with django-q's fix: a `post_spawn` receiver that "
             "discards the inherited pool", MODE, A2S, "clean", prefork=True, fix=True),
)  # fmt: skip

RUN_ARGS: dict[str, tuple[str, ...]] = {"huey": ("--args", "[1]"), "django-q": ("--args", "[1]")}
"""Huey's tasks take ``n`` (every ``--task`` of a run gets the same ``--args``)."""


def render_matrix(scenarios: tuple[Scenario, ...] = SCENARIOS) -> str:
    """The README's table, and the line saying where it is asserted."""
    rows = ["| Runner | Worker | Pattern | Verdict |", "| --- | --- | --- | --- |"]
    for s in scenarios:
        shown = f"**{s.verdict}**" if s.verdict in ("unsafe", "leak") else s.verdict
        rows.append(f"| {RUNNERS[s.runner].title} | {WORKERS[s.runner, s.worker]} | {s.pattern} "
                    f"| {shown} |")  # fmt: skip
    return "\n".join([*rows, "", FOOTER])


def invocation(scenarios: list[Scenario]) -> tuple[str, ...]:
    """The simulate arguments that measure every one of these rows (one run's) at once."""
    runner, worker, prefork = scenarios[0].run
    args: list[str] = ["--pool", worker, *(["--prefork"] if prefork else [])]
    modes: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for s in scenarios:
        if s.args[0] == "--modes":
            modes += [m for m in s.args[1].split(",") if m not in modes]
        elif s.args not in seen:
            seen.add(s.args)
            args += s.args
    if modes:
        args += ["--modes", ",".join(modes)]
    tasks_args = RUN_ARGS.get(runner, ()) if "--task" in args else ()
    return (*args, *tasks_args)


# --- the runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_ready() -> None:
    """Redis must be there (CI starts it): an unreachable one fails the tests, never skips them."""
    reachable_redis("redis://127.0.0.1:6379")


@pytest.fixture(scope="module")
def matrix_database(database_url: str) -> Iterator[str]:
    """A database of the module's own, with tasksproj's migrations applied (Django's Tasks keeps
    its queue there); the other runners' projects only read the catalog."""
    with scratch_database(database_url, "pooldoctor_matrix") as url:
        env = {**os.environ, "TASKSPROJ_DB": urlsplit(url).path.lstrip("/")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0", "--settings",
                        RUNNERS["django-tasks"].settings], cwd=RUNNERS["django-tasks"].project,
                       env=env, check=True, timeout=120)  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def import_query_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tasks module that queries at import (a cache warmed from the database), re-exporting the
    project's actor: what a Dramatiq project loading data at import looks like."""
    root = tmp_path_factory.mktemp("matrix-import-query")
    (root / f"{IMPORT_QUERY_MODULE}.py").write_text(textwrap.dedent("""\
        from dramatiqproj.catalog import catalog
        from dramatiqproj.tasks import count_databases

        DATABASES = catalog().objects.count()  # a query at import
        __all__ = ["count_databases"]
    """))  # fmt: skip
    return root


Measure = Callable[[Scenario], dict[str, Any]]


@pytest.fixture(scope="module")
def measure(matrix_database: str, redis_ready: None, import_query_path: Path) -> Measure:
    """The report of the run a row belongs to, each run made once, when first asked for."""
    reports: dict[tuple[str, str, bool], dict[str, Any]] = {}

    def report(row: Scenario) -> dict[str, Any]:
        if row.run not in reports:
            runner = RUNNERS[row.runner]
            rows = [s for s in SCENARIOS if s.run == row.run]
            path = os.pathsep.join(filter(None, [str(import_query_path),
                                                 os.environ.get("PYTHONPATH")]))  # fmt: skip
            env = {
                "DATABASE_URL": matrix_database,
                "PYTHONPATH": path,
                "TASKSPROJ_DB": urlsplit(matrix_database).path.lstrip("/"),
            }
            proc = pooldoctor("simulate", "--runner", runner.option, "--settings",
                              runner.settings, *runner.options, *SMALL, *invocation(rows),
                              "--database", matrix_database, "--format", "json",
                              cwd=runner.project, timeout=180, env=env)  # fmt: skip
            assert proc.stdout.startswith("{"), f"exit {proc.returncode}: {proc.stderr}"
            reports[row.run] = json.loads(proc.stdout)
        return reports[row.run]

    return report


@pytest.mark.parametrize("row", SCENARIOS, ids=lambda s: s.id)
def test_each_row_is_what_simulate_measures(row: Scenario, measure: Measure) -> None:
    report = measure(row)
    runner = report["runner"]
    assert (runner["name"], runner["pool"]) == (row.runner, row.worker)
    if row.fix:
        fix = report["fix"]
        assert fix is not None, report["headline"]
        assert (fix["measured"], fix["applied_to"]) == (row.verdict, row.subject), fix
        return
    results = {r["subject"]: r for r in report["results"]}
    assert row.subject in results, f"{row.subject} not in {sorted(results)}"
    result = results[row.subject]
    assert result["verdict"] == row.verdict, result["summary"]


def test_every_runner_has_its_default_path_a_leak_and_where_it_forks_the_fix() -> None:
    for name in RUNNERS:
        rows = [s for s in SCENARIOS if s.runner == name]
        assert "clean" in {s.verdict for s in rows if not s.fix}, name
        assert "leak" in {s.verdict for s in rows}, name
    forking = {(s.runner, s.worker) for s in SCENARIOS if s.prefork}
    assert forking == {("rq", "fork"), ("rq", "pool"), ("huey", "process"), ("django-q", "cluster")}
    for runner, worker in forking:
        verdicts = {(s.fix, s.verdict) for s in SCENARIOS if s.run == (runner, worker, True)}
        assert verdicts == {(False, "unsafe"), (True, "clean")}, (runner, worker)


def test_the_readme_holds_the_rendered_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1
    between = readme.split(START, 1)[1].split(END, 1)[0]
    assert between.strip("\n") == render_matrix(), (
        "README.md's runner matrix is not render_matrix()'s: write it between the markers"
    )


def test_dramatiqs_query_at_import_is_each_process_own(measure: Measure) -> None:
    """What the import-query row's words say beyond its verdict: nothing came from a parent."""
    row = next(s for s in SCENARIOS if s.subject == IMPORT_QUERY)
    result = next(r for r in measure(row)["results"] if r["subject"] == IMPORT_QUERY)
    assert result["workers"], result["summary"]
    for worker in result["workers"]:
        assert (worker["inherited_pool"], worker["inherited_connections"]) == (False, 0)
        assert worker["held"] == 1, result["summary"]  # the import's, on the main thread
