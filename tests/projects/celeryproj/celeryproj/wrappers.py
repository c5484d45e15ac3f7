"""A clean wrapper for async task bodies: the cleanup runs on the thread that used the
connection, on success and on failure."""

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections


def async_task_wrapper(async_func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(async_func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            async with ThreadSensitiveContext():
                try:
                    return await async_func(*args, **kwargs)
                finally:
                    await sync_to_async(close_old_connections)()

        return asyncio.run(main())

    return sync_wrapper
