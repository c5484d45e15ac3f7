"""Tasks for the server-fault tests: a task that sits in the database until the test lets it go,
so the test can end its sessions (pg_terminate_backend, a server restart) while it runs."""

import asyncio
import os
import time

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

# Far beyond any test: a task left waiting (the test failed first) still ends.
GIVE_UP = 60.0


def _wait(release):
    deadline = time.monotonic() + GIVE_UP
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        while not os.path.exists(release) and time.monotonic() < deadline:
            cursor.execute("SELECT pg_sleep(0.05)")
        # Once more after the release: a session ended between two queries fails here.
        cursor.execute("SELECT 1")


def waits(release):
    """Queries until the file ``release`` exists. Like a Celery worker's Django fix-up it first
    drops a connection an earlier task left unusable, so a task after a lost connection runs
    (and a run with a lost connection can look clean)."""
    close_old_connections()
    _wait(release)


def waits_async(release):
    """The same through the async ORM, as a management command runs it: asyncio.run, the queries
    on asgiref's executor thread."""
    close_old_connections()

    async def run():
        await sync_to_async(close_old_connections)()
        await sync_to_async(_wait)(release)

    asyncio.run(run())
