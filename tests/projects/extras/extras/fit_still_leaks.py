"""``asyncio.run`` (pinned) plus an audit query on a thread of its own that ends without closing
its connection (a leak the rewrite of the ``asyncio.run`` call cannot fix: the patched wrapper
still leaks)."""

import asyncio
import threading

from django.db import connection


def _audit():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def audited(func):
    def wrapper(*args, **kwargs):
        thread = threading.Thread(target=_audit)
        thread.start()
        thread.join()
        return asyncio.run(func(*args, **kwargs))

    return wrapper
