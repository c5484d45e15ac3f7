from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=32, unique=True)
    status = models.CharField(max_length=16, default="new")
    total = models.DecimalField(max_digits=10, decimal_places=2)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.number
