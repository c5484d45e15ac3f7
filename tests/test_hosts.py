"""The hosts behind the interface, without a broker or a database: what each owns, refuses and
says about itself, and how the Celery host reads its workers' replies."""

from __future__ import annotations

from typing import Any

import celery
import pytest
from celery import Celery, Task
from celery.fixups.django import DjangoWorkerFixup

from pooldoctor.errors import UsageError
from pooldoctor.hosts import get_host, worker_host
from pooldoctor.hosts.celery import django_integration, signal_handlers
from pooldoctor.hosts.celery.control import classify


@pytest.fixture
def app() -> Celery:
    return Celery("hosts", set_as_current=False)


def test_the_celery_host_runs_a_task_through_the_tracer_as_a_worker(app: Celery) -> None:
    seen: list[Any] = []

    @app.task(name="hosts.add", bind=True)
    def add(self: Task, x: int, y: int) -> int:
        seen.append(self.request.is_eager)
        return x + y

    host = get_host("celery")
    assert host.owns(add) and not host.owns(add.run)
    assert host.runner(add)(2, 3) == 5
    assert seen == [False]  # not apply(): the Django fix-up skips eager tasks
    assert host.signature_target(add) == add.run


def test_a_failing_task_raises_what_it_raised(app: Celery) -> None:
    @app.task(name="hosts.fail")
    def fail() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        get_host("celery").runner(fail)()


def test_an_async_task_is_refused_unless_its_class_awaits_it(app: Celery) -> None:
    class Awaiting(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return "awaited"

    async def body() -> None:
        pass

    host = get_host("celery")
    never = app.task(name="hosts.never")(body)
    awaited = app.task(name="hosts.awaited", base=Awaiting)(body)
    assert host.refusal(never) == (
        "a Celery task on an async def: Celery never awaits the coroutine, so the task's body "
        "never runs"
    )
    assert host.refusal(awaited) is None


def test_the_inprocess_host_calls_a_function_and_refuses_a_bare_coroutine_function() -> None:
    async def later() -> None:
        pass

    host = get_host("inprocess")
    assert host.runner(len) is len
    assert host.refusal(len) is None
    assert host.refusal(later) == (
        "an async function that nothing wraps, so calling it only creates a coroutine"
    )
    assert host.facts().version and host.installed()


def test_only_the_celery_host_has_workers() -> None:
    assert worker_host("celery").name == "celery"
    with pytest.raises(LookupError, match="no workers"):
        worker_host("inprocess")


def test_celery_facts_read_the_installed_django_fixup(app: Celery) -> None:
    app.conf.worker_concurrency = 3
    facts = get_host("celery").facts(app)
    assert (facts.name, facts.version) == ("celery", celery.__version__)
    assert facts.concurrency == "prefork -c 3"
    # An app created without DJANGO_SETTINGS_MODULE has no Django fix-up.
    assert facts.django == "no Django fix-up on this app: Celery leaves Django's connections alone"
    sentence = django_integration(None, celery.__version__)
    # What the installed fix-up's code does, not what its version suggests.
    discards = "close_pool" in DjangoWorkerFixup._close_database.__code__.co_names
    assert ("close_pool()" in sentence) is discards
    assert sentence.startswith(f"Celery {celery.__version__}'s Django fix-up closes")


def test_signal_handlers_are_the_projects_own() -> None:
    from celery.signals import task_postrun

    def project_handler(**kwargs: Any) -> None:
        pass

    task_postrun.connect(project_handler, weak=False)
    try:
        assert f"task_postrun: {__name__}.{project_handler.__qualname__}" in signal_handlers()
    finally:
        task_postrun.disconnect(project_handler)


def test_celerys_answer_to_an_unknown_command_is_marked_not_installed() -> None:
    assert classify({"error": "KeyError('pooldoctor_census')"}) == {
        "error": "KeyError('pooldoctor_census')",
        "installed": False,
    }
    assert classify({"error": "KeyError('lost')"}) == {"error": "KeyError('lost')"}
    assert classify("odd") == {"error": "'odd'"}
    census = {"schema": 1, "processes": []}
    assert classify(census) is census


def test_a_host_without_remote_control_says_so() -> None:
    from pooldoctor.hosts.base import WorkerHost

    class Quiet(WorkerHost):
        name = "quiet"

        def owns(self, obj: Any) -> bool:
            return False

        def runner(self, task: Any) -> Any:
            return task

        def load_app(self, spec: str) -> Any:
            return None

        def check_broker(self, url: str) -> None:
            pass

    with pytest.raises(UsageError, match="quiet workers cannot be asked for a live census"):
        Quiet().ask(None, 1.0)
