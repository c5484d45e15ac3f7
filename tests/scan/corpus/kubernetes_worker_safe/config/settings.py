SECRET_KEY = "django-insecure-pooled"
INSTALLED_APPS = ["django.contrib.contenttypes", "orders"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 10, "timeout": 5}},
    }
}

CELERY_BROKER_URL = "redis://localhost:6379/0"
