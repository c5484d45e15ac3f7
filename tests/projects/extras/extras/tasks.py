"""Tasks for --task's edge cases: a plain sync function, and things --task must refuse."""

import asyncio

from asgiref.sync import sync_to_async
from celery import Celery
from django.db import connection

app = Celery("extras")

not_a_task = 42


def _count_databases(days):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE %s >= 0", [days])
        return cursor.fetchone()[0]


async def _report(days):
    return await sync_to_async(_count_databases)(days)


def nightly_report(days):
    """A plain function, as a management command calls it: asyncio.run, no cleanup, so the ORM
    runs on asgiref's process-wide thread and its connection stays checked out there."""
    return asyncio.run(_report(days))


@app.task
async def never_awaited():
    """Celery calls this and gets a coroutine back: the body never runs."""
    await asyncio.sleep(0)


class LoopTask(app.Task):
    """A base class that runs the task's coroutine in an event loop: the coroutine is awaited."""

    def __call__(self, *args, **kwargs):
        return asyncio.run(self.run(*args, **kwargs))


@app.task(base=LoopTask)
async def looped_report(days):
    return await _report(days)
