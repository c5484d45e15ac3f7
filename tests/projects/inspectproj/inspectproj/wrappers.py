"""A clean wrapper for async task bodies: async_to_sync, and close_old_connections() on the thread
that used the connection (async_to_sync sends thread-sensitive ORM calls to the calling thread)."""

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import close_old_connections


def clean_async_task(async_func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(async_func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            try:
                return await async_func(*args, **kwargs)
            finally:
                await sync_to_async(close_old_connections)()

        return async_to_sync(main)()

    return sync_wrapper
