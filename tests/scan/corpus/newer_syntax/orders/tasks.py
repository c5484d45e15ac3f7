from celery import shared_task

from orders.models import Order

type OrderNumber = str


def total_of[T: (int, float)](amounts: list[T]) -> T:
    return sum(amounts)


@shared_task
async def recalculate(number: OrderNumber):
    order = await Order.objects.aget(number=number)
    return order.total
