from asgiref.sync import sync_to_async
from django.http import JsonResponse

from orders.models import Order


def _latest():
    return list(Order.objects.values("number", "status")[:20])


async def latest(request):
    rows = await sync_to_async(_latest)()
    return JsonResponse({"orders": rows})


async def count(request):
    return JsonResponse({"count": await Order.objects.acount()})
