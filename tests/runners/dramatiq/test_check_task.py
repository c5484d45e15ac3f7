"""``check --task`` on Dramatiq actors: one message at a time through the worker's own message
path (WorkerThread.process_message and the project's middleware, django-dramatiq's
DbConnectionsMiddleware included), in the subject process."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import check_json

from .conftest import DRAMATIQPROJ, SETTINGS

TASKS = DRAMATIQPROJ / "dramatiqproj" / "tasks.py"


def line_of(text: str) -> int:
    (number,) = [n for n, line in enumerate(TASKS.read_text().splitlines(), 1) if text in line]
    return number


def check(url: str, task: str, **env: str) -> tuple[int, dict[str, Any]]:
    return check_json(*SETTINGS, "--task", f"dramatiqproj.tasks.{task}", "--tasks", "6",
                      cwd=DRAMATIQPROJ, database_url=url,
                      env={"DATABASE_URL": url, **env})  # fmt: skip


@pytest.fixture(scope="module")
def default_path(dramatiq_database_url: str) -> tuple[int, dict[str, Any]]:
    return check(dramatiq_database_url, "count_databases")


def test_the_default_path_a_sync_actor_through_the_middleware_is_clean(
    default_path: tuple[int, dict[str, Any]],
) -> None:
    code, report = default_path
    (result,) = report["results"]
    assert (code, report["verdict"], result["verdict"]) == (0, "clean", "clean"), report["headline"]
    assert result["lost_slots"] == 0
    assert result["tasks"] == 6


def test_without_django_dramatiqs_middleware_the_same_actor_pins_a_connection(
    dramatiq_database_url: str,
) -> None:
    # The clean verdict above is the middleware's doing: the runner runs it, as the worker does.
    _, report = check(dramatiq_database_url, "count_databases",
                      DRAMATIQPROJ_NO_DB_MIDDLEWARE="1")  # fmt: skip
    (result,) = report["results"]
    assert result["verdict"] == "pinned", report["headline"]
    assert "MainThread" in report["headline"]


def test_an_actor_on_the_leaking_wrapper_is_a_leak_at_the_projects_line(
    dramatiq_database_url: str,
) -> None:
    code, report = check(dramatiq_database_url, "leaky")
    (result,) = report["results"]
    assert (code, result["verdict"]) == (1, "leak"), report["headline"]
    assert result["lost_slots"] >= 1
    sites = [(s["file"], s["line"]) for s in result["leak_sites"]]
    assert ("dramatiqproj/tasks.py", line_of("# the line a leak site names")) in sites


def test_an_async_actor_runs_on_the_asyncio_middlewares_loop(dramatiq_database_url: str) -> None:
    # The async ORM under Dramatiq's event loop thread goes to asgiref's process-wide executor
    # thread, which keeps its connection: DbConnectionsMiddleware closes the worker thread's.
    _, report = check(dramatiq_database_url, "count_databases_async")
    (result,) = report["results"]
    assert result["verdict"] == "pinned", report["headline"]
    assert result["tasks"] == 6 and result["failed_tasks"] == 0, report["headline"]
    assert "process-wide sync_to_async executor" in report["headline"]
    sites = [(s["file"], s["line"]) for s in result["leak_sites"]]
    assert ("dramatiqproj/tasks.py", line_of("await catalog().objects")) in sites


def test_an_async_actor_without_the_asyncio_middleware_is_refused() -> None:
    # Its worker fails every message before the body runs: nothing to measure.
    from dramatiq import Actor
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import AsyncIO

    from pooldoctor.hosts import host_for

    async def body(*args: Any) -> None:
        return None

    def actor(name: str, *middleware: Any) -> Actor[Any, None]:
        broker = StubBroker(middleware=list(middleware))
        return Actor(body, broker=broker, actor_name=name, queue_name="q", priority=0, options={})

    without, with_loop = actor("a"), actor("b", AsyncIO())
    host = host_for(without)
    assert host.name == "dramatiq"
    assert "without the AsyncIO middleware" in (host.refusal(without) or "")
    assert host.refusal(with_loop) is None
