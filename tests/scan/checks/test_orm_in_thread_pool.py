"""PD320: ORM code handed to a thread pool (asyncio.to_thread, run_in_executor, submit/map)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

DJANGO_TASK = """\
    import asyncio

    from django.tasks import task

    from .models import Order


    def load_totals(pk):
        return list(Order.objects.filter(customer=pk).values_list("total", flat=True))


    @task()
    async def recompute(pk):
        totals = await asyncio.to_thread(load_totals, pk)
        return sum(totals)
"""


def test_to_thread_in_an_async_task_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"shop/tasks.py": DJANGO_TASK}, "PD320")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD320",
        "shop/tasks.py",
        14,
        20,
    )
    assert finding.message == (
        "asyncio.to_thread runs load_totals() on a thread of a pool: that thread opens its own "
        "connection and nothing closes it; it is held while the thread lives and lost when the "
        "thread ends (with a pool, one slot per thread per run)"
    )
    assert "finally" in finding.fix


@pytest.mark.parametrize(
    ("source", "line", "starts"),
    [
        (
            "import asyncio\nimport dramatiq\n\n\n@dramatiq.actor\nasync def sync(pk):\n"
            "    loop = asyncio.get_running_loop()\n"
            "    await loop.run_in_executor(None, lambda: Order.objects.get(pk=pk).save())\n",
            8,
            "run_in_executor runs a lambda using the ORM on a thread of a pool",
        ),
        (
            "from concurrent.futures import ThreadPoolExecutor\n\n\ndef fan_out(ids):\n"
            "    with ThreadPoolExecutor(max_workers=8) as pool:\n"
            "        return list(pool.map(Order.objects.get, ids))\n",
            6,
            "ThreadPoolExecutor.map runs Order.objects.get on a thread of a pool",
        ),
        (
            "from concurrent import futures\n\nPOOL = futures.ThreadPoolExecutor(4)\n\n\n"
            "def refresh(pk):\n    Order.objects.filter(pk=pk).update(seen=True)\n\n\n"
            "def enqueue(pk):\n    return POOL.submit(refresh, pk)\n",
            11,
            "ThreadPoolExecutor.submit runs refresh() on a thread of a pool",
        ),
    ],
    ids=["dramatiq-run-in-executor", "with-pool-map", "module-pool-submit"],
)
def test_thread_pools_are_flagged(
    tmp_path: Path, scan_source: ScanSource, source: str, line: int, starts: str
) -> None:
    [finding] = scan_source(tmp_path, {"shop/jobs.py": source}, "PD320")

    assert finding.line == line
    assert finding.message.startswith(starts)


@pytest.mark.parametrize(
    "source",
    [
        # closes its connections in a finally, on the pool's thread
        DJANGO_TASK.replace(
            '    return list(Order.objects.filter(customer=pk).values_list("total", flat=True))',
            "    try:\n        return list(Order.objects.filter(customer=pk))\n"
            "    finally:\n        connections.close_all()",
        ),
        # no ORM in what the thread runs
        "import asyncio\n\n\nasync def fetch(url):\n    return await asyncio.to_thread(get, url)\n",
        # a process pool
        "from concurrent.futures import ProcessPoolExecutor\n\n\nasync def run(loop, ids):\n"
        "    with ProcessPoolExecutor() as pool:\n"
        "        return await loop.run_in_executor(pool, Order.objects.get, ids)\n",
        # submit on something that is not a thread pool
        "def enqueue(queue, pk):\n    queue.submit(Order.objects.get, pk)\n"
        "# ThreadPoolExecutor is not used here\n",
        # the thread-sensitive bridge: PD305's business when thread_sensitive=False
        "from asgiref.sync import sync_to_async\n\n\nasync def load(pk):\n"
        "    return await sync_to_async(Order.objects.get)(pk=pk)\n",
    ],
    ids=["closes-in-finally", "no-orm", "process-pool", "not-a-thread-pool", "sync-to-async"],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, source: str) -> None:
    assert scan_source(tmp_path, {"shop/jobs.py": source}, "PD320") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = DJANGO_TASK.replace(
        "load_totals, pk)", "load_totals, pk)  # pooldoctor: ignore[PD320]"
    )
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD320") == []
