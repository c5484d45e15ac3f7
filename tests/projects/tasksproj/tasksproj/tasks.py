"""The project's tasks: a sync one (the default path), the issue's async one reaching the ORM
through sync_to_async(thread_sensitive=False), and its fix."""

import django
from asgiref.sync import sync_to_async
from django.db import connection

if django.VERSION >= (6, 0):
    from django.tasks import task
else:  # the backport on Django 5.x
    from django_tasks import task


def databases() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database")
        return int(cursor.fetchone()[0])


@task
def count_databases() -> int:
    return databases()


@task
async def count_databases_async() -> int:
    # A fresh executor thread per run (async_to_sync's loop): its connection is never returned.
    return await sync_to_async(databases, thread_sensitive=False)()


@task
async def count_databases_async_fixed() -> int:
    return await sync_to_async(databases)()
