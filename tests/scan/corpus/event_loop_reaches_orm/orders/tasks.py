import asyncio

from celery import shared_task

from orders.sync import sync_orders


@shared_task(bind=True, max_retries=3)
def sync_from_erp(self, numbers):
    asyncio.run(sync_orders(numbers))
