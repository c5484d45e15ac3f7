"""PD304: a ThreadSensitiveContext whose cleanup runs on its thread, but only on success."""

from __future__ import annotations

from pathlib import Path

from .conftest import FIXTURES, ScanSource

ON_SUCCESS_ONLY = """\
    import asyncio
    import functools

    from asgiref.sync import ThreadSensitiveContext, sync_to_async
    from django.db import close_old_connections


    def run_async(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            async def main():
                async with ThreadSensitiveContext():
                    result = await func(*args, **kwargs)
                    await sync_to_async(close_old_connections)()
                    return result

            return asyncio.run(main())

        return wrapper
"""


def test_cleanup_after_the_body_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"mysite/celeryapp.py": ON_SUCCESS_ONLY}, "PD304")

    assert (finding.code, finding.line, finding.column) == ("PD304", 14, 23)
    assert finding.message == (
        "the connection cleanup inside ThreadSensitiveContext runs only when the task succeeds; "
        "a failing task's ORM thread ends holding its connection; confirm with: pooldoctor check "
        "--wrapper mysite.celeryapp:run_async"
    )


def test_cleanup_in_except_only_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio

        from asgiref.sync import ThreadSensitiveContext, sync_to_async
        from celery import shared_task
        from django.db import connections


        @shared_task
        def refresh(pk):
            async def main():
                async with ThreadSensitiveContext():
                    try:
                        await Order.objects.aget(pk=pk)
                    except Order.DoesNotExist:
                        await sync_to_async(connections.close_all)()

            asyncio.run(main())
    """
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD304")

    assert finding.line == 15
    assert "runs only when the task succeeds" in finding.message


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = ON_SUCCESS_ONLY.replace(
        "await sync_to_async(close_old_connections)()",
        "await sync_to_async(close_old_connections)()  # pooldoctor: ignore[PD304]",
    )
    assert scan_source(tmp_path, {"mysite/celeryapp.py": source}, "PD304") == []


def test_cleanup_in_finally_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    fixed = (FIXTURES / "fixed/mysite/celeryapp.py").read_text()
    assert scan_source(tmp_path, {"mysite/celeryapp.py": fixed}, "PD304") == []


def test_no_cleanup_on_the_thread_is_left_to_pd303(tmp_path: Path, scan_source: ScanSource) -> None:
    leaky = (FIXTURES / "leaky/mysite/celeryapp.py").read_text()
    assert scan_source(tmp_path, {"mysite/celeryapp.py": leaky}, "PD304") == []


def test_asgi_middleware_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import ThreadSensitiveContext, sync_to_async
        from django.db import close_old_connections


        class ContextMiddleware:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                async with ThreadSensitiveContext():
                    await self.app(scope, receive, send)
                    await sync_to_async(close_old_connections)()
    """
    assert scan_source(tmp_path, {"mysite/middleware.py": source}, "PD304") == []


def test_async_to_sync_bridge_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from django.db import close_old_connections


        @shared_task
        def refresh(pk):
            async_to_sync(_refresh)(pk)
            close_old_connections()
    """
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD304") == []
