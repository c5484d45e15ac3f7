"""Settings from the environment: DATABASE_URL (PostgreSQL), DRAMATIQPROJ_BROKER (Redis) and its
DRAMATIQPROJ_NAMESPACE."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["django_dramatiq", "dramatiqproj"]
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
_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "dramatiq.middleware.AsyncIO",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
]
if os.environ.get("DRAMATIQPROJ_NO_DB_MIDDLEWARE") == "1":  # what the project's clean path owes it
    _MIDDLEWARE.remove("django_dramatiq.middleware.DbConnectionsMiddleware")
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {
        "url": os.environ.get("DRAMATIQPROJ_BROKER", "redis://127.0.0.1:6379/4"),
        "namespace": os.environ.get("DRAMATIQPROJ_NAMESPACE", "dramatiq"),
    },
    "MIDDLEWARE": _MIDDLEWARE,
}
