"""Settings from the environment: DATABASE_URL (PostgreSQL) and INSPECTPROJ_BROKER."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ["DATABASE_URL"])

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or "postgres"),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": str(_db.port or 5432),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 0, "max_size": 4, "timeout": 2}},
    }
}
CELERY_BROKER_URL = os.environ.get("INSPECTPROJ_BROKER", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("INSPECTPROJ_BACKEND") or None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
