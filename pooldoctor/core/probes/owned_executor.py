"""``ThreadSensitiveContext(executor=...)``: one long-lived ORM thread per process, cleaned after
every task on that thread.

Recent asgiref releases let a context use an executor the caller owns and keeps
(``ThreadSensitiveContext``'s ``executor`` argument). One ``ThreadPoolExecutor(max_workers=1)``
per worker process gives every task the same ORM thread, so no thread dies holding a connection,
and the cleanup runs where the connection lives.
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

from pooldoctor.core.probes import SyncTask, register
from pooldoctor.core.probes.task import AsyncTask
from pooldoctor.core.probes.thread_sensitive_context_closed import cleaned_in_context

FIX = """\
import asyncio, functools
from concurrent.futures import ThreadPoolExecutor
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections

# One ORM thread per worker process, kept for the process's life.
_orm_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orm")

def run_async_task(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        async def main():
            async with ThreadSensitiveContext(executor=_orm_thread):
                try:
                    return await func(*args, **kwargs)
                finally:
                    await sync_to_async(close_old_connections)()
        return asyncio.run(main())
    return wrapper
"""


def _unavailable() -> str | None:
    from asgiref.sync import ThreadSensitiveContext

    if "executor" not in inspect.signature(ThreadSensitiveContext).parameters:
        import asgiref

        return (
            f"asgiref {asgiref.__version__} has no ThreadSensitiveContext(executor=...) "
            "(upgrade asgiref to get it)"
        )
    return None


@register(__name__, order=70, unavailable=_unavailable, fix=FIX)
def wrap(task: AsyncTask) -> SyncTask:
    from asgiref.sync import ThreadSensitiveContext

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pooldoctor-orm")
    # asgiref < 3.9 has no executor= (the mode is skipped there, see _unavailable); its stubs
    # make mypy object in CI's lowest environment, and the ignore is unused in the newest.
    return cleaned_in_context(
        task,
        lambda: ThreadSensitiveContext(executor=executor),  # type: ignore[call-arg,unused-ignore]
    )
