"""PD305 in the tasks of runners other than Celery: the check keys on the sync_to_async call, not
on the task decorator, so Django's Tasks framework, Dramatiq, RQ and Huey are covered alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

BODY = """


async def refresh(pk):
    order = await sync_to_async(Order.objects.get, thread_sensitive=False)(pk=pk)
    return order.pk
"""


@pytest.mark.parametrize(
    ("header", "decorator"),
    [
        ("from django.tasks import task", "@task()"),
        ("from django_tasks import task", "@task(priority=10)"),
        ("import dramatiq", "@dramatiq.actor(max_retries=3)"),
        ("from django_rq import job", "@job('default')"),
    ],
    ids=["django-tasks", "django-tasks-backport", "dramatiq", "django-rq"],
)
def test_async_tasks_of_every_runner_are_flagged(
    tmp_path: Path, scan_source: ScanSource, header: str, decorator: str
) -> None:
    source = f"from asgiref.sync import sync_to_async\n{header}\n" + BODY.replace(
        "async def", f"{decorator}\nasync def"
    )
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD305")

    assert (finding.code, finding.line) == ("PD305", 8)
    assert finding.message.startswith(
        "sync_to_async(thread_sensitive=False) runs Order.objects.get on the event loop's "
        "default executor"
    )


def test_django_task_on_async_def_is_not_pd306(tmp_path: Path, scan_source: ScanSource) -> None:
    # The Tasks framework runs an async def with async_to_sync: not Celery's never-awaited body.
    source = (
        "from django.tasks import task\n\n\n@task()\nasync def refresh(pk):\n"
        "    await Order.objects.filter(pk=pk).aupdate(seen=True)\n"
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD306") == []


def test_thread_sensitive_in_a_django_task_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = "from asgiref.sync import sync_to_async\nfrom django.tasks import task\n" + (
        BODY.replace(", thread_sensitive=False", "").replace("async def", "@task()\nasync def")
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD305") == []


def test_a_tasks_framework_task_names_async_to_sync(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = "from asgiref.sync import sync_to_async\nfrom django.tasks import task\n" + (
        BODY.replace("async def", "@task()\nasync def")
    )
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD305")

    assert (
        "and async_to_sync, which runs the Tasks framework's async tasks, shuts them down after "
        "every run (asyncio.run) without closing them" in finding.message
    )


def test_a_dramatiq_actor_keeps_the_long_lived_loop_wording(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = "from asgiref.sync import sync_to_async\nimport dramatiq\n" + (
        BODY.replace("async def", "@dramatiq.actor\nasync def")
    )
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD305")

    assert "which stays open for as long as the loop keeps the thread" in finding.message
