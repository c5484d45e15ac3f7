from django.urls import path
from shop import api, views

urlpatterns = [
    path("orders/<int:pk>/", views.order_detail),
    path("api/totals/", api.totals),
]
