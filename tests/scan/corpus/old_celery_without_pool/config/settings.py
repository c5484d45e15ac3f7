SECRET_KEY = "django-insecure-plain"
INSTALLED_APPS = ["django.contrib.contenttypes", "orders"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "CONN_MAX_AGE": 0,
    }
}

CELERY_BROKER_URL = "redis://localhost:6379/0"
