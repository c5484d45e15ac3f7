"""A sync task, found by the app's autodiscover_tasks()."""

from celery import shared_task
from django.db import connection


@shared_task
def count_databases() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


async def count_databases_async(minimum: int) -> int:
    """An async task body, run through the project's decorator (guideproj.wrappers)."""
    from asgiref.sync import sync_to_async

    count = await sync_to_async(count_databases.run)()
    return max(count, minimum)
