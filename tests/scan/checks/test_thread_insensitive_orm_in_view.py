"""PD307: ORM code run through sync_to_async(..., thread_sensitive=False) in a view."""

from __future__ import annotations

from pathlib import Path

import pytest

from pooldoctor.commands.scan import run_scan, select_checks

from .conftest import ScanSource

PROJECTS = Path(__file__).resolve().parents[2] / "projects"
VIEW = """\
    from asgiref.sync import sync_to_async
    from django.http import JsonResponse

    from shop.models import Order


    async def order_detail(request, pk):
        order = await sync_to_async(Order.objects.get, thread_sensitive=False)(pk=pk)
        return JsonResponse({"total": str(order.total)})
"""


def test_a_module_the_urlconf_imports_is_a_view_module() -> None:
    # GIVEN web_asgi: shop/api.py is imported by mysite/urls.py, its view runs a helper that
    # iterates Order.objects with thread_sensitive=False; shop/views.py uses the default
    findings = run_scan(PROJECTS / "web_asgi", [], select_checks(["PD305", "PD307"])).findings

    # THEN one PD307 on the helper's sync_to_async call, and no PD305 for the same call
    [finding] = findings
    assert (finding.code, finding.severity, finding.file, finding.line, finding.column) == (
        "PD307",
        "error",
        "shop/api.py",
        12,
        18,
    )
    assert finding.message == (
        "sync_to_async(thread_sensitive=False) in a view runs _totals() on the event loop's "
        "default executor, off the request's thread: each executor thread opens its own "
        "connection, which Django's end-of-request cleanup never closes, and keeps it for the "
        "life of the process (measured with a pool of max_size 4: 8 concurrent requests lost 4 "
        "slots, and later requests failed with PoolTimeout)"
    )
    assert finding.fix.startswith("drop thread_sensitive=False around ORM code in views")


@pytest.mark.parametrize(
    "name", ["shop/views.py", "shop/views/orders.py", "src/shop/views/__init__.py"]
)
def test_views_modules_are_flagged(tmp_path: Path, scan_source: ScanSource, name: str) -> None:
    [finding] = scan_source(tmp_path, {name: VIEW}, "PD30")

    assert (finding.code, finding.file, finding.line, finding.column) == ("PD307", name, 8, 19)
    assert "in a view runs Order.objects.get on" in finding.message


def test_class_based_view_in_a_module_wired_by_relative_import(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    urls = """\
        from django.urls import path

        from .endpoints import reports

        urlpatterns = [path("reports/", reports.Report.as_view())]
    """
    view = """\
        from asgiref.sync import sync_to_async
        from django.views import View


        class Report(View):
            async def get(self, request):
                return await self.load()

            @sync_to_async(thread_sensitive=False)
            def load(self):
                return list(Order.objects.values())
    """
    files = {"shop/urls.py": urls, "shop/endpoints/reports.py": view}
    [finding] = scan_source(tmp_path, files, "PD30")

    assert (finding.code, finding.file, finding.line) == ("PD307", "shop/endpoints/reports.py", 9)
    assert "in a view runs load() on" in finding.message


def test_outside_views_the_same_call_stays_pd305(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"shop/tasks.py": VIEW}, "PD30")

    assert (finding.code, finding.file) == ("PD305", "shop/tasks.py")


@pytest.mark.parametrize(
    "replacement",
    [
        "sync_to_async(Order.objects.get)",
        "sync_to_async(Order.objects.get, thread_sensitive=True)",
    ],
    ids=["default", "thread-sensitive"],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, replacement: str) -> None:
    source = VIEW.replace("sync_to_async(Order.objects.get, thread_sensitive=False)", replacement)
    assert scan_source(tmp_path, {"shop/views.py": source}, "PD30") == []


def test_non_orm_call_in_a_view_is_not_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        import requests
        from asgiref.sync import sync_to_async


        async def proxy(request):
            return await sync_to_async(requests.get, thread_sensitive=False)("https://x")
    """
    assert scan_source(tmp_path, {"shop/views.py": source}, "PD30") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = VIEW.replace("(pk=pk)", "(pk=pk)  # pooldoctor: ignore[PD307]")
    assert scan_source(tmp_path, {"shop/views.py": source}, "PD307") == []


def test_view_helper_closing_in_finally_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    # GIVEN the function run on the executor thread closes its connection in a finally
    source = """\
        from asgiref.sync import sync_to_async
        from django.db import connection
        from django.http import JsonResponse


        def count_orders():
            try:
                return Order.objects.count()
            finally:
                connection.close()


        async def dashboard(request):
            total = await sync_to_async(count_orders, thread_sensitive=False)()
            return JsonResponse({"orders": total})
    """
    assert scan_source(tmp_path, {"shop/views.py": source}, "PD307") == []
    # AND without the finally it is flagged, at the sync_to_async call
    flagged = source.replace("connection.close()", "pass")
    [finding] = scan_source(tmp_path, {"shop/views.py": flagged}, "PD307")
    assert (finding.line, finding.code) == (14, "PD307")
    assert "in a view runs count_orders() on the event loop's default executor" in finding.message
