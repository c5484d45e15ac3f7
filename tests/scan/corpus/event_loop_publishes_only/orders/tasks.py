import asyncio
import json

import aio_pika
import httpx
from celery import shared_task

from orders.models import Order


async def publish(routing_key, payload):
    connection = await aio_pika.connect_robust("amqp://guest:guest@rabbitmq/")
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body=json.dumps(payload).encode()), routing_key=routing_key
        )


async def notify_webhook(url, payload):
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(url, json=payload)


async def order_summary(number):
    order = await Order.objects.aget(number=number)
    return {"number": order.number, "total": str(order.total)}


@shared_task
def order_created(number, total):
    asyncio.run(publish("orders.created", {"number": number, "total": total}))


@shared_task
def order_shipped(number, url):
    asyncio.run(notify_webhook(url, {"number": number, "status": "shipped"}))
