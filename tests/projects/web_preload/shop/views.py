from django.http import HttpResponse

from shop.models import Currency

# Imported at the first request, in the worker: not at preload time.
CODES = list(Currency.objects.values_list("code", flat=True))


def index(request):
    return HttpResponse(", ".join(CODES))
