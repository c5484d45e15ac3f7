"""A sync task, found by the app's autodiscover_tasks()."""

from celery import shared_task
from django.db import connection


@shared_task
def count_databases() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database")
        row = cursor.fetchone()
    return int(row[0]) if row else 0
