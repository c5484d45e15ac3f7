from django.urls import path

from webproj import views

urlpatterns = [
    path("databases/", views.databases),
    path("async-databases/", views.async_databases),
]
