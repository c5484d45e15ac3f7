"""PD302: a Celery Task base class whose __call__ or run runs an event loop."""

from __future__ import annotations

from pathlib import Path

from .conftest import ScanSource

ASYNC_TASK_BASE = """\
    import asyncio
    import inspect

    from celery import Task


    class AsyncTask(Task):
        def __call__(self, *args, **kwargs):
            result = self.run(*args, **kwargs)
            if inspect.isawaitable(result):
                return asyncio.run(result)
            return result
"""


def test_call_running_asyncio_run_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"mysite/tasks_base.py": ASYNC_TASK_BASE}, "PD302")

    assert (finding.code, finding.line, finding.column) == ("PD302", 11, 20)
    assert finding.message.startswith(
        "Celery Task base 'AsyncTask' runs asyncio.run in __call__: every task using this base"
    )
    assert "process-wide executor thread" in finding.message
    assert finding.message.endswith("; confirm with: pooldoctor check --modes asyncio-run")


def test_app_task_base_with_a_worker_loop_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        import asyncio

        from mysite.celery import app


        class LoopTask(app.Task):
            loop = None

            def run(self, *args, **kwargs):
                if self.loop is None:
                    self.loop = asyncio.new_event_loop()
                return self.loop.run_until_complete(self.run_async(*args, **kwargs))
    """
    [finding] = scan_source(tmp_path, {"mysite/base.py": source}, "PD302")

    assert finding.line == 12
    assert finding.message.startswith("Celery Task base 'LoopTask' runs run_until_complete in run")


def test_context_without_cleanup_on_its_thread_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        import asyncio

        import celery
        from asgiref.sync import ThreadSensitiveContext
        from django.db import close_old_connections


        class ContextTask(celery.Task):
            def __call__(self, *args, **kwargs):
                async def main():
                    async with ThreadSensitiveContext():
                        return await self.run(*args, **kwargs)

                try:
                    return asyncio.run(main())
                finally:
                    close_old_connections()
    """
    [finding] = scan_source(tmp_path, {"mysite/base.py": source}, "PD302")

    assert finding.line == 15
    assert "ends its ThreadSensitiveContext with nothing closing the connection" in finding.message
    assert finding.message.endswith("--modes thread-sensitive-context")


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = ASYNC_TASK_BASE.replace(
        "return asyncio.run(result)", "return asyncio.run(result)  # pooldoctor: ignore[PD302]"
    )
    assert scan_source(tmp_path, {"mysite/tasks_base.py": source}, "PD302") == []


def test_cleanup_on_the_context_thread_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        import asyncio

        from asgiref.sync import ThreadSensitiveContext, sync_to_async
        from celery import Task
        from django.db import close_old_connections


        class ContextTask(Task):
            def __call__(self, *args, **kwargs):
                return asyncio.run(self._in_context(*args, **kwargs))

            async def _in_context(self, *args, **kwargs):
                async with ThreadSensitiveContext():
                    try:
                        return await self.run(*args, **kwargs)
                    finally:
                        await sync_to_async(close_old_connections)()
    """
    assert scan_source(tmp_path, {"mysite/base.py": source}, "PD302") == []


def test_async_to_sync_base_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import async_to_sync
        from celery import Task
        from django.db import close_old_connections


        class AsyncTask(Task):
            def __call__(self, *args, **kwargs):
                try:
                    return async_to_sync(self.run)(*args, **kwargs)
                finally:
                    close_old_connections()
    """
    assert scan_source(tmp_path, {"mysite/base.py": source}, "PD302") == []


def test_other_classes_and_methods_are_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio

        from celery import Task


        class Runner:
            def __call__(self, coroutine):
                return asyncio.run(coroutine)


        class Step(asyncio.Task):
            def run(self):
                return asyncio.run(self.get_coro())


        class LoggedTask(Task):
            def on_failure(self, exc, task_id, args, kwargs, einfo):
                asyncio.run(notify(task_id))

            def __call__(self, *args, **kwargs):
                return super().__call__(*args, **kwargs)
    """
    assert scan_source(tmp_path, {"mysite/base.py": source}, "PD302") == []


def test_runner_from_another_module_that_cleans_up_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the base runs its coroutine through the project's runner, imported from another
    # module, which awaits sync_to_async(close_old_connections)() in a finally
    runner = """\
        from asgiref.sync import sync_to_async
        from django.db import close_old_connections


        async def closing(coroutine):
            try:
                return await coroutine
            finally:
                await sync_to_async(close_old_connections)()
    """
    base = """\
        import asyncio

        from celery import Task

        from mysite.runner import {name}


        class AsyncTask(Task):
            def __call__(self, *args, **kwargs):
                return asyncio.run({name}(self.run(*args, **kwargs)))
    """
    files = {
        "mysite/__init__.py": "",
        "mysite/runner.py": runner,
        "mysite/base.py": base.format(name="closing"),
    }
    assert scan_source(tmp_path, files, "PD302") == []
    # AND a runner without the cleanup is flagged
    files["mysite/runner.py"] = runner.replace("closing", "plain").replace(
        "await sync_to_async(close_old_connections)()", "pass"
    )
    files["mysite/base.py"] = base.format(name="plain")
    [finding] = scan_source(tmp_path, files, "PD302")
    assert (finding.file, finding.line) == ("mysite/base.py", 10)
