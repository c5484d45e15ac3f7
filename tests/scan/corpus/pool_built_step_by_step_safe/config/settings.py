from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-change-me"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "orders",
]

options = {"sslmode": "prefer", "application_name": "shop"}
options["pool"] = {"min_size": 2, "max_size": 10, "timeout": 5}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "HOST": "db",
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
    }
}

CELERY_BROKER_URL = "redis://redis:6379/0"
