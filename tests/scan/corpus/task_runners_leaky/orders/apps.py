from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from .models import Currency

        # Cached once per process: but this process is the parent the workers fork from.
        self.default_currency = Currency.objects.filter(default=True).first()
