"""Settings from the environment: DATABASE_URL (PostgreSQL, pooled), RQPROJ_REDIS and
RQPROJ_QUEUE (a queue of the test's own besides ``default``)."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["django_rq"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or "postgres"),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": str(_db.port or 5432),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 4, "timeout": 2}},
    }
}
_redis = {"URL": os.environ.get("RQPROJ_REDIS", "redis://127.0.0.1:6379/3")}
RQ_QUEUES = {"default": _redis, os.environ.get("RQPROJ_QUEUE", "default"): _redis}
