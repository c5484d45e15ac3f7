from django.db import models


class Currency(models.Model):
    code = models.CharField(max_length=3)
    default = models.BooleanField(default=False)


class Order(models.Model):
    total = models.DecimalField(max_digits=10, decimal_places=2)
    seen = models.BooleanField(default=False)
