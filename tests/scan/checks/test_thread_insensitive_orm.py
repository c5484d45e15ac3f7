"""PD305: ORM code run through sync_to_async(..., thread_sensitive=False)."""

from __future__ import annotations

from pathlib import Path

from .conftest import ScanSource

MANAGER_METHOD = """\
    from asgiref.sync import sync_to_async

    from shop.models import Order


    async def totals(ids):
        get = sync_to_async(Order.objects.get, thread_sensitive=False)
        return [await get(pk=pk) for pk in ids]
"""


def test_manager_method_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"shop/reports.py": MANAGER_METHOD}, "PD305")

    assert (finding.code, finding.line, finding.column) == ("PD305", 7, 11)
    assert finding.message.startswith(
        "sync_to_async(thread_sensitive=False) runs Order.objects.get on the event loop's "
        "default executor"
    )
    # No asyncio.run in this module: the message does not blame one.
    assert "asyncio.run" not in finding.message
    assert "stays open for as long as the loop keeps the thread" in finding.message
    assert finding.message.endswith("; confirm with: pooldoctor check --modes thread-insensitive")


def test_lambda_and_module_function_are_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import asyncio
        import functools

        from asgiref import sync


        def load(pk):
            return list(Item.objects.filter(order=pk))


        async def gather(pks):
            return await asyncio.gather(
                sync.sync_to_async(lambda: Order.objects.count(), thread_sensitive=False)(),
                *(sync.sync_to_async(load, thread_sensitive=False)(pk) for pk in pks),
                sync.sync_to_async(thread_sensitive=False)(functools.partial(load, 1))(),
            )
    """
    findings = scan_source(tmp_path, {"shop/reports.py": source}, "PD305")

    assert [(f.line, f.column) for f in findings] == [(13, 9), (14, 11), (15, 9)]
    assert "runs a lambda using the ORM on" in findings[0].message
    assert "runs load() on" in findings[1].message
    assert "runs load() on" in findings[2].message


def test_decorated_function_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from asgiref.sync import sync_to_async
        from django.db import transaction


        @sync_to_async(thread_sensitive=False)
        def settle(order):
            with transaction.atomic():
                order.paid = True
                order.save()
    """
    [finding] = scan_source(tmp_path, {"shop/payments.py": source}, "PD305")

    assert finding.line == 5
    assert "runs settle() on the event loop's default executor" in finding.message


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = MANAGER_METHOD.replace(
        "thread_sensitive=False)", "thread_sensitive=False)  # pooldoctor: ignore[PD305]"
    )
    assert scan_source(tmp_path, {"shop/reports.py": source}, "PD305") == []


def test_non_orm_functions_are_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import time

        import requests
        from asgiref.sync import sync_to_async


        def checksum(path):
            with open(path, "rb") as f:
                return hash(f.read())


        @sync_to_async(thread_sensitive=False)
        def resize(image):
            return image.thumbnail((64, 64))


        async def work(url, path):
            await sync_to_async(requests.get, thread_sensitive=False)(url)
            await sync_to_async(time.sleep, thread_sensitive=False)(1)
            await sync_to_async(checksum, thread_sensitive=False)(path)
            await sync_to_async(lambda: time.sleep(1), thread_sensitive=False)()
    """
    assert scan_source(tmp_path, {"media/work.py": source}, "PD305") == []


def test_thread_sensitive_orm_calls_are_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    source = """\
        from asgiref.sync import async_to_sync, sync_to_async
        from celery import shared_task
        from channels.layers import get_channel_layer
        from django_q.tasks import async_task


        @sync_to_async
        def settle(order):
            order.save()


        async def totals(pk):
            await sync_to_async(Order.objects.get)(pk=pk)
            await sync_to_async(Order.objects.get, thread_sensitive=True)(pk=pk)


        @shared_task
        def notify(pk):
            async_to_sync(get_channel_layer().group_send)("orders", {"pk": pk})
            async_task("shop.tasks.settle", pk)
    """
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD305") == []


CLOSING = """\
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from shop.models import Order


    def export(pk):
        try:
            return list(Order.objects.filter(customer=pk))
        finally:
            connections.close_all()


    async def report(pk):
        return await sync_to_async(export, thread_sensitive=False)(pk)
"""


def test_function_closing_in_finally_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the function run on the executor thread closes its connections in a finally (issue
    # #17): they are closed on that thread before the call returns
    assert scan_source(tmp_path, {"shop/reports.py": CLOSING}, "PD305") == []


def test_function_closing_only_on_success_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the close comes after the query, not in a finally: a failing query skips it
    source = CLOSING.replace(
        "try:\n            return list(Order.objects.filter(customer=pk))\n        finally:\n",
        "orders = list(Order.objects.filter(customer=pk))\n",
    ).replace("            connections.close_all()", "        connections.close_all()")
    assert "finally" not in source
    [finding] = scan_source(tmp_path, {"shop/reports.py": source}, "PD305")

    assert finding.line == 15
    assert "runs export() on the event loop's default executor" in finding.message
    assert "(export() closes its connections only when it returns normally, not in a finally)" in (
        finding.message
    )


def test_function_imported_from_another_module_is_followed(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the function run is imported, and reaches the ORM through another function
    services = """\
        from shop.models import Order


        def rows(pk):
            return list(Order.objects.filter(customer=pk))


        def export(pk):
            return [str(r) for r in rows(pk)]


        def export_cleanly(pk):
            try:
                return export(pk)
            finally:
                close_old_connections()
    """
    caller = """\
        import asyncio

        from asgiref.sync import sync_to_async

        from shop import services


        async def report(pk):
            return await sync_to_async(services.{name}, thread_sensitive=False)(pk)


        def main():
            asyncio.run(report(1))
    """
    files = {
        "shop/__init__.py": "",
        "shop/services.py": services,
        "shop/reports.py": caller.format(name="export"),
    }
    [finding] = scan_source(tmp_path, files, "PD305")

    assert (finding.file, finding.line) == ("shop/reports.py", 9)
    assert finding.message.startswith(
        "sync_to_async(thread_sensitive=False) runs services.export() (which reaches "
        "Order.objects in shop/services.py:5 via export() → rows()) on the event loop's "
        "default executor"
    )
    # This module runs asyncio.run: the message says what that does to the threads.
    assert "asyncio.run shuts the threads down without closing them" in finding.message
    # AND the same call of a function that closes in a finally is not flagged
    files["shop/reports.py"] = caller.format(name="export_cleanly")
    assert scan_source(tmp_path, files, "PD305") == []
