"""The recipe from "Using Async Functions in Celery with Django Connection Pooling" (Oct 2025), as
a Dramatiq project would reuse it: asyncio.run() in a ThreadSensitiveContext, and
close_old_connections() on the worker thread, which is not the thread that used the connection."""

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections


def async_task_wrapper(async_func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(async_func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        async def wrapped_with_context() -> Any:
            async with ThreadSensitiveContext():
                return await async_func(*args, **kwargs)

        try:
            close_old_connections()
            return asyncio.run(wrapped_with_context())
        finally:
            close_old_connections()

    sync_wrapper.__signature__ = inspect.signature(async_func)  # type: ignore[attr-defined]
    return sync_wrapper
