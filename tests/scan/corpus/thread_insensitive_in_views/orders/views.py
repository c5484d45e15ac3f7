from asgiref.sync import sync_to_async
from django.db import connections
from django.http import JsonResponse

from orders.models import Order


def _order_totals():
    return list(Order.objects.values_list("number", "total")[:100])


def _order_count():
    try:
        return Order.objects.count()
    finally:
        connections.close_all()


async def totals(request):
    rows = await sync_to_async(_order_totals, thread_sensitive=False)()
    return JsonResponse({"orders": [[n, str(t)] for n, t in rows]})


async def count(request):
    value = await sync_to_async(_order_count, thread_sensitive=False)()
    return JsonResponse({"count": value})
