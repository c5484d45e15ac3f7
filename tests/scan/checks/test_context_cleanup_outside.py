"""PD303: a per-task ThreadSensitiveContext whose connection cleanup never runs on its thread."""

from __future__ import annotations

from pathlib import Path

from .conftest import FIXTURES, ScanSource

# As published in "Using Async Functions in Celery with Django Connection Pooling" (Oct 2025),
# ThreadSensitiveContext import missing and all.
BLOG_RECIPE = '''\
# celeryapp.py
import asyncio
import functools
import inspect
from typing import Any, Callable

from django.db import close_old_connections

def _async_to_sync_wrapper(async_func: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps async functions for Celery tasks with proper connection cleanup."""

    @functools.wraps(async_func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        async def wrapped_with_context() -> Any:
            async with ThreadSensitiveContext():
                return await async_func(*args, **kwargs)

        try:
            # Close stale connections BEFORE task execution
            # (Matches Django's request_started signal behavior)
            close_old_connections()

            # Run the async task with per-task executor isolation
            return asyncio.run(wrapped_with_context())
        finally:
            # Close connections AFTER task execution
            # (Matches Django's request_finished signal behavior)
            close_old_connections()

    # Preserve function signature for inspection
    sync_wrapper.__signature__ = inspect.signature(async_func)
    sync_wrapper.__annotations__ = async_func.__annotations__
    return sync_wrapper

def async_task(**kwargs):
    """Custom task decorator that supports async functions."""
    def inner(func):
        # Detect async functions and wrap them
        if inspect.iscoroutinefunction(func):
            func = _async_to_sync_wrapper(func)

        return app.task(**kwargs)(func)

    return inner
'''


def test_blog_recipe_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"mysite/celeryapp.py": BLOG_RECIPE}, "PD303")

    assert (finding.code, finding.line, finding.column) == ("PD303", 15, 13)
    assert finding.message == (
        "ThreadSensitiveContext: nothing closes the connection on the context's own thread "
        "before it exits (the cleanup at line 21 runs in the calling thread); each task loses a "
        "pool slot; confirm with: pooldoctor check --wrapper "
        "mysite.celeryapp:_async_to_sync_wrapper"
    )


def test_leaky_fixture_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    leaky = (FIXTURES / "leaky/mysite/celeryapp.py").read_text()
    [finding] = scan_source(tmp_path, {"mysite/celeryapp.py": leaky}, "PD303")

    assert finding.line == 23
    assert "the cleanup at line 28 runs in the calling thread" in finding.message


def test_context_with_no_cleanup_or_a_direct_one_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        import asyncio

        from asgiref.sync import ThreadSensitiveContext
        from celery import shared_task
        from django.db import close_old_connections


        @shared_task
        def refresh(pk):
            async def main():
                async with ThreadSensitiveContext():
                    await Order.objects.aget(pk=pk)

            asyncio.run(main())


        @shared_task
        def touch(pk):
            async def main():
                async with ThreadSensitiveContext():
                    try:
                        await Order.objects.filter(pk=pk).aupdate(seen=True)
                    finally:
                        # Called directly, this runs in the event loop's thread.
                        close_old_connections()

            asyncio.run(main())
    """
    findings = scan_source(tmp_path, {"shop/tasks.py": source}, "PD303")

    assert [(f.line, f.column) for f in findings] == [(11, 9), (20, 9)]
    assert "before it exits; each task loses a pool slot" in findings[0].message
    assert findings[0].message.endswith("--wrapper shop.tasks:refresh")


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = BLOG_RECIPE.replace(
        "async with ThreadSensitiveContext():",
        "async with ThreadSensitiveContext():  # pooldoctor: ignore[PD303]",
    )
    assert scan_source(tmp_path, {"mysite/celeryapp.py": source}, "PD303") == []


def test_fixed_fixture_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    fixed = (FIXTURES / "fixed/mysite/celeryapp.py").read_text()
    assert scan_source(tmp_path, {"mysite/celeryapp.py": fixed}, "PD303") == []


def test_asgi_middleware_and_consumers_are_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # Django's ASGIHandler runs request_finished (close_old_connections) on the context's thread.
    source = """\
        from asgiref.sync import ThreadSensitiveContext


        class ContextMiddleware:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                async with ThreadSensitiveContext():
                    await self.app(scope, receive, send)


        def context_middleware(get_response):
            async def middleware(request):
                async with ThreadSensitiveContext():
                    return await get_response(request)
            return middleware


        class ChatConsumer:
            async def websocket_receive(self, message):
                async with ThreadSensitiveContext():
                    await self.handle(message)
    """
    assert scan_source(tmp_path, {"mysite/middleware.py": source}, "PD303") == []


def test_bridges_without_a_context_are_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from channels.layers import get_channel_layer
        from django_q.tasks import async_task


        @shared_task
        def announce(pk):
            async_to_sync(get_channel_layer().group_send)("orders", {"pk": pk})
            async_task("shop.tasks.settle", pk)
    """
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD303") == []
