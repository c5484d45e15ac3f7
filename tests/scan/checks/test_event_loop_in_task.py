"""PD301: async ORM code run from a Celery task with asyncio.run or run_until_complete."""

from __future__ import annotations

from pathlib import Path

from .conftest import FIXTURES, ScanSource

TASK_WITH_ASYNCIO_RUN = """\
    import asyncio

    from celery import shared_task

    from shop.models import Order


    async def _refresh(order_id):
        order = await Order.objects.aget(pk=order_id)
        await order.asave()


    @shared_task
    def refresh(order_id):
        return asyncio.run(_refresh(order_id))
"""


def test_asyncio_run_in_a_task_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"shop/tasks.py": TASK_WITH_ASYNCIO_RUN}, "PD301")

    assert (finding.code, finding.file, finding.line) == ("PD301", "shop/tasks.py", 15)
    assert finding.message.startswith(
        "asyncio.run(_refresh(order_id)) in Celery task 'refresh' reaches Order.objects.aget in "
        "shop/tasks.py:9 via _refresh()"
    )
    assert "process-wide executor thread" in finding.message
    assert finding.message.endswith("; confirm with: pooldoctor check --modes asyncio-run")


def test_loop_kept_per_worker_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    # No celery import here: the task decorator is enough to know the module's a Celery one.
    source = """\
        import asyncio

        from mysite.celery import app
        from shop.models import Order

        loop = asyncio.new_event_loop()


        async def count():
            return await Order.objects.acount()


        @app.task(bind=True)
        def report(self):
            return loop.run_until_complete(count())
    """
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD301")

    assert finding.line == 15
    assert finding.message.startswith(
        "run_until_complete(count()) in Celery task 'report' reaches Order.objects.acount in "
        "shop/tasks.py:10 via count()"
    )
    assert "never closed or returned to the pool" in finding.message


def test_helper_in_a_celery_module_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio

        from asgiref.sync import sync_to_async
        from celery import shared_task


        def run_sync(coroutine):
            return asyncio.get_event_loop().run_until_complete(coroutine)


        @shared_task
        def sync_users():
            run_sync(sync_to_async(import_users)())
    """
    [finding] = scan_source(tmp_path, {"users/tasks.py": source}, "PD301")

    assert finding.line == 8
    assert finding.message.startswith("run_until_complete in 'run_sync'")


def test_decorator_gets_a_wrapper_hint(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio
        import functools

        from celery import Celery

        app = Celery("mysite")


        def run_async(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                return asyncio.run(func(*args, **kwargs))
            return wrapper


        def async_task(**options):
            def inner(func):
                @app.task(**options)
                def task(*args):
                    return asyncio.run(func(*args))
                return task
            return inner


        @app.task
        @run_async
        async def touch(pk):
            await Thing.objects.filter(pk=pk).aupdate(seen=True)
    """
    findings = scan_source(tmp_path, {"mysite/celeryapp.py": source}, "PD301")

    assert [f.line for f in findings] == [12, 20]
    assert findings[0].message.endswith("--modes asyncio-run --wrapper mysite.celeryapp:run_async")
    assert findings[1].message.startswith("asyncio.run in Celery task 'task'")
    assert findings[1].message.endswith(
        "--modes asyncio-run --wrapper mysite.celeryapp:async_task()"
    )


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = TASK_WITH_ASYNCIO_RUN.replace(
        "asyncio.run(_refresh(order_id))",
        "asyncio.run(_refresh(order_id))  # pooldoctor: ignore[PD301]",
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD301") == []


def test_async_to_sync_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = TASK_WITH_ASYNCIO_RUN.replace(
        "return asyncio.run(_refresh(order_id))", "return async_to_sync(_refresh)(order_id)"
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD301") == []


def test_channels_group_send_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from channels.layers import get_channel_layer

        from chat.models import Room


        @shared_task
        def announce(room_id):
            room = Room.objects.get(pk=room_id)
            async_to_sync(get_channel_layer().group_send)(room.group, {"type": "chat.message"})
    """
    assert scan_source(tmp_path, {"chat/tasks.py": source}, "PD301") == []


def test_async_code_without_the_orm_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio

        import httpx
        from celery import shared_task


        async def fetch(urls):
            async with httpx.AsyncClient() as client:
                return await asyncio.gather(*(client.get(u) for u in urls))


        @shared_task
        def crawl(urls):
            return [r.status_code for r in asyncio.run(fetch(urls))]
    """
    assert scan_source(tmp_path, {"crawler/tasks.py": source}, "PD301") == []


def test_thread_sensitive_context_is_left_to_pd303(tmp_path: Path, scan_source: ScanSource) -> None:
    # The blog's recipe: PD303 reports its context; PD301 stays quiet.
    recipe = (FIXTURES / "leaky/mysite/celeryapp.py").read_text()
    in_coroutine = """\
        import asyncio

        from asgiref.sync import ThreadSensitiveContext
        from celery import shared_task


        async def _main(pk):
            async with ThreadSensitiveContext():
                await Order.objects.aget(pk=pk)


        @shared_task
        def refresh(pk):
            asyncio.run(_main(pk))
    """
    files = {"mysite/celeryapp.py": recipe, "shop/tasks.py": in_coroutine}
    assert scan_source(tmp_path, files, "PD301") == []


def test_fixed_celeryapp_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    fixed = (FIXTURES / "fixed/mysite/celeryapp.py").read_text()
    assert scan_source(tmp_path, {"mysite/celeryapp.py": fixed}, "PD301") == []


def test_cleanup_on_the_executor_thread_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        import asyncio

        from asgiref.sync import sync_to_async
        from celery import shared_task
        from django.db import close_old_connections


        async def _refresh(pk):
            try:
                await Order.objects.aget(pk=pk)
            finally:
                await sync_to_async(close_old_connections)()


        @shared_task
        def refresh(pk):
            asyncio.run(_refresh(pk))
    """
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD301") == []


def test_outside_celery_and_outside_functions_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    django_q = """\
        import asyncio

        from django_q.tasks import async_task


        async def count():
            return await Order.objects.acount()


        def enqueue():
            async_task("shop.tasks.report")


        def report():
            return asyncio.run(count())
    """
    script = """\
        import asyncio

        from celery import Celery

        app = Celery("mysite")


        async def main():
            print(await Order.objects.acount())


        if __name__ == "__main__":
            asyncio.run(main())
    """
    files = {"shop/queue.py": django_q, "mysite/celery.py": script}
    assert scan_source(tmp_path, files, "PD301") == []


def test_task_base_is_left_to_pd302(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio

        from celery import Task


        class AsyncTask(Task):
            def __call__(self, *args, **kwargs):
                return asyncio.run(self.run(*args, **kwargs))


        async def count():
            return await Order.objects.acount()
    """
    assert scan_source(tmp_path, {"mysite/base.py": source}, "PD301") == []


def test_coroutine_without_the_orm_in_an_orm_module_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN a task whose coroutine only talks to a message bus, in a module that uses the async
    # ORM elsewhere (issue #17: flagged because of the module, not of the code run)
    source = """\
        import asyncio

        from celery import shared_task

        from shop.bus import client
        from shop.models import Order


        async def publish(event):
            async with client() as bus:
                await bus.send("orders", event)


        async def count():
            return await Order.objects.acount()


        @shared_task
        def announce(event):
            asyncio.run(publish(event))
    """
    # THEN nothing is flagged: the coroutine run never reaches the ORM
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD301") == []


SERVICES = """\
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    from shop.models import Order


    async def load(pk):
        return await Order.objects.aget(pk=pk)


    async def sync_orders(pk):
        order = await load(pk)
        return order.total


    async def sync_orders_cleanly(pk):
        try:
            return await load(pk)
        finally:
            await sync_to_async(close_old_connections)()


    def read_orders():
        return list(Order.objects.all())


    async def export_orders():
        return await sync_to_async(read_orders)()
"""

CALLER = """\
    import asyncio

    from celery import shared_task

    from .services import {name}


    @shared_task
    def sync(pk):
        return asyncio.run({name}(pk))
"""


def test_coroutine_imported_from_another_module_is_followed(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN a task running a coroutine imported from the project's services module, which
    # awaits a function that uses the async ORM
    files = {
        "mysite/__init__.py": "",
        "mysite/services.py": SERVICES,
        "mysite/tasks.py": CALLER.format(name="sync_orders"),
    }
    # WHEN scanned
    [finding] = scan_source(tmp_path, files, "PD301")
    # THEN the finding is at the asyncio.run and names the path to the ORM call
    assert (finding.file, finding.line) == ("mysite/tasks.py", 10)
    assert finding.message.startswith(
        "asyncio.run(sync_orders(pk)) in Celery task 'sync' reaches Order.objects.aget in "
        "mysite/services.py:8 via sync_orders() → load(): "
    )


def test_sync_to_async_of_orm_code_in_another_module_is_followed(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    files = {
        "mysite/__init__.py": "",
        "mysite/services.py": SERVICES,
        "mysite/tasks.py": CALLER.format(name="export_orders"),
    }
    [finding] = scan_source(tmp_path, files, "PD301")

    assert finding.message.startswith(
        "asyncio.run(export_orders(pk)) in Celery task 'sync' reaches Order.objects in "
        "mysite/services.py:24 via export_orders() → read_orders(): "
    )


def test_cleanup_in_the_followed_coroutine_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the imported coroutine awaits sync_to_async(close_old_connections)() in a finally
    files = {
        "mysite/__init__.py": "",
        "mysite/services.py": SERVICES,
        "mysite/tasks.py": CALLER.format(name="sync_orders_cleanly"),
    }
    # THEN the executor's connection is closed: not flagged
    assert scan_source(tmp_path, files, "PD301") == []


def test_calls_are_followed_to_a_bounded_depth(tmp_path: Path, scan_source: ScanSource) -> None:
    # GIVEN the ORM call five calls away from the coroutine run (main → a → b → c → d → e)
    chain = "\n\n".join(
        f"async def {name}():\n    return await {callee}()\n"
        for name, callee in zip("abcd", "bcde", strict=True)
    )
    source = f"""\
import asyncio

from celery import shared_task


async def main():
    return await a()


{chain}

async def e():
    return await Order.objects.acount()


@shared_task
def deep():
    return asyncio.run(main())
"""
    # THEN it is beyond the depth followed (4), and a shorter chain is flagged
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD301") == []
    shorter = source.replace("return await a()", "return await c()")
    [finding] = scan_source(tmp_path, {"shop/tasks.py": shorter}, "PD301")
    assert "via main() → c() → d() → e()" in finding.message
