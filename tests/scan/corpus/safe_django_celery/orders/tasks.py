import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from django.db import transaction

from orders.models import Order
from orders.sync import refresh_order

logger = logging.getLogger(__name__)


@shared_task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True)
def refresh(self, number):
    async_to_sync(refresh_order)(number)


@shared_task
def close_stale_orders():
    with transaction.atomic():
        updated = Order.objects.filter(status="new", total=0).update(status="closed")
    logger.info("closed %d orders", updated)
