"""The widely shared recipe for async task bodies (tests/conftest.py LEAKY_WRAPPER): a fresh
event loop per call, the ORM on a thread that ends with it, clean-up on the wrong thread."""

import asyncio

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections


def run_async(func):
    def wrapper(*args):
        async def main():
            async with ThreadSensitiveContext():
                return await func(*args)

        try:
            return asyncio.run(main())
        finally:
            close_old_connections()

    return wrapper
