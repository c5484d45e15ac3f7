import asyncio

import dramatiq
from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_task, periodic_task

from .models import Order


@periodic_task(crontab(minute="*/10"))
def mark_stale_orders():
    Order.objects.filter(seen=False).update(seen=True)


@db_task()
def mark_seen(pk):
    Order.objects.filter(pk=pk).update(seen=True)


def load_totals():
    return list(Order.objects.values_list("total", flat=True))


@task()
async def recompute_totals():
    totals = await asyncio.to_thread(load_totals)
    return sum(totals)


@dramatiq.actor
def touch(pk):
    Order.objects.filter(pk=pk).update(seen=True)
