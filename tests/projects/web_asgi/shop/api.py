from asgiref.sync import sync_to_async
from django.http import JsonResponse

from shop.models import Order


def _totals():
    return [str(o.total) for o in Order.objects.all()]


async def totals(request):
    rows = await sync_to_async(_totals, thread_sensitive=False)()
    return JsonResponse({"totals": rows})
