import httpx

from orders.models import Order


async def fetch_remote(number):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"https://erp.example.com/orders/{number}")
        return response.json()


async def sync_orders(numbers):
    for number in numbers:
        remote = await fetch_remote(number)
        order = await Order.objects.aget(number=number)
        order.status = remote["status"]
        await order.asave(update_fields=["status"])
