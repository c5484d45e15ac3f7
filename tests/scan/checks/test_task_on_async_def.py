"""PD306: a Celery task decorator placed directly on an async def."""

from __future__ import annotations

from pathlib import Path

from .conftest import ScanSource

SHARED_TASK = """\
    from celery import shared_task


    @shared_task
    async def refresh(pk):
        await Order.objects.filter(pk=pk).aupdate(seen=True)
"""


def test_shared_task_on_async_def_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"shop/tasks.py": SHARED_TASK}, "PD306")

    assert (finding.code, finding.line, finding.column) == ("PD306", 5, 1)
    assert finding.message == (
        "Celery task 'refresh' is an async def: Celery calls it and never awaits the coroutine, "
        "so its body never runs"
    )


def test_app_task_forms_are_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from mysite.celery import app


        @app.task(bind=True, max_retries=3)
        async def one(self):
            pass


        class Jobs:
            @app.task
            async def two(self):
                pass


        @traced
        @app.task(name="three")
        async def three():
            pass
    """
    findings = scan_source(tmp_path, {"shop/tasks.py": source}, "PD306")

    assert [(f.line, f.column) for f in findings] == [(5, 1), (11, 5), (17, 1)]
    assert "'one' is an async def" in findings[0].message
    assert "'two' is an async def" in findings[1].message
    assert "'three' is an async def" in findings[2].message


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = SHARED_TASK.replace(
        "async def refresh(pk):", "async def refresh(pk):  # pooldoctor: ignore[PD306]"
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD306") == []


def test_wrapping_decorators_are_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    # The blog's @async_task wraps the coroutine function before Celery sees it; an explicit
    # bridge does the same.
    source = """\
        from asgiref.sync import async_to_sync
        from celery import shared_task

        from mysite.celeryapp import async_task, run_async


        @async_task(name="shop.refresh")
        async def refresh(pk):
            await Order.objects.aget(pk=pk)


        @shared_task
        @run_async
        async def touch(pk):
            await Order.objects.aget(pk=pk)


        @shared_task
        @async_to_sync
        async def ping():
            pass


        @shared_task
        def bridge(pk):
            return async_to_sync(refresh)(pk)
    """
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD306") == []


def test_unrelated_async_task_names_are_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        from django_q.tasks import async_task
        from invoke import task


        async def refresh(pk):
            await Order.objects.aget(pk=pk)


        @task
        async def deploy(c):
            pass


        def enqueue(pk):
            async_task("shop.tasks.refresh", pk)
    """
    assert scan_source(tmp_path, {"shop/queue.py": source}, "PD306") == []
