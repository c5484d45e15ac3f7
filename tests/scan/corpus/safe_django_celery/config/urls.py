from django.urls import path

from orders import views

urlpatterns = [
    path("orders/totals/", views.latest),
    path("orders/count/", views.count),
]
