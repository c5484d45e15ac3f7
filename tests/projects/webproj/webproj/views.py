"""Two read-only views: a sync one and an async one, each a query on pg_catalog."""

from django.db import connection
from django.http import JsonResponse


def databases(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_catalog.pg_database")
        (count,) = cursor.fetchone()
    return JsonResponse({"databases": count})


async def async_databases(request):
    from asgiref.sync import sync_to_async

    return await sync_to_async(databases)(request)
