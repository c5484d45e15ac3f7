from asgiref.sync import sync_to_async
from django.db import connections
from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, task as huey_task

from .models import Currency, Order


@db_periodic_task(crontab(minute="*/10"))
def mark_stale_orders():
    Order.objects.filter(seen=False).update(seen=True)


@db_task()
def mark_seen(pk):
    Order.objects.filter(pk=pk).update(seen=True)


@huey_task()
def ping(url):
    return url


def load_totals():
    try:
        return list(Order.objects.values_list("total", flat=True))
    finally:
        connections.close_all()


@task()
async def recompute_totals():
    totals = await sync_to_async(load_totals)()
    return sum(totals)


@task()
async def default_currency():
    return await Currency.objects.filter(default=True).afirst()
