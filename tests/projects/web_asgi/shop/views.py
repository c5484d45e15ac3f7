from asgiref.sync import sync_to_async
from django.http import JsonResponse

from shop.models import Order


async def order_detail(request, pk):
    order = await sync_to_async(Order.objects.get)(pk=pk)
    return JsonResponse({"total": str(order.total)})
