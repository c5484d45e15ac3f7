import csv
import io

from asgiref.sync import sync_to_async
from django.db import connections

from orders.models import Order


def _export_orders(status):
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for order in Order.objects.filter(status=status).iterator():
            writer.writerow([order.number, order.total])
        return buffer.getvalue()
    finally:
        connections.close_all()


async def export_orders(status):
    return await sync_to_async(_export_orders, thread_sensitive=False)(status)
