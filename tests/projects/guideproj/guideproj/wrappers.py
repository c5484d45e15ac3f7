"""The project's decorator for async task bodies: async_to_sync, closed in ``finally``."""

import functools

from asgiref.sync import async_to_sync
from django.db import close_old_connections


def run_async(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return async_to_sync(func)(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper
