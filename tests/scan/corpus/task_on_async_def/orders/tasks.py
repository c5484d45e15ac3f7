from celery import shared_task

from orders.models import Order


@shared_task
async def mark_paid(number):
    await Order.objects.filter(number=number).aupdate(status="paid")
