"""The widely shared recipe for async task bodies (an event loop per task, the ORM's thread in a
ThreadSensitiveContext): its close_old_connections() runs on the wrong thread, so every task
loses the connection its executor thread took."""

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections


def async_task_wrapper(async_func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(async_func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            async with ThreadSensitiveContext():
                return await async_func(*args, **kwargs)

        try:
            close_old_connections()
            return asyncio.run(main())
        finally:
            close_old_connections()

    return sync_wrapper
