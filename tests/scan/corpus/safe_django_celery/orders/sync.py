from orders.models import Order


async def refresh_order(number):
    order = await Order.objects.aget(number=number)
    order.status = "refreshed"
    await order.asave(update_fields=["status"])
