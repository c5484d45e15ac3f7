"""An ASGI project that keeps persistent connections (PD316) and runs ORM code off the request's
thread in a view (PD307). Read by tests/scan only; never imported."""

import os

SECRET_KEY = "web-asgi-fixture"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DB_NAME", "shop"),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
}
