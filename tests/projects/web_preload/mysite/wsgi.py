import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()

from shop.models import Currency  # noqa: E402

DEFAULT_CURRENCY = Currency.objects.get(default=True)
