"""Settings from the environment: DATABASE_URL (PostgreSQL), HUEYPROJ_BROKER (Redis) and
HUEYPROJ_QUEUE (the Huey instance's name)."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["huey.contrib.djhuey", "hueyproj"]
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
HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": os.environ.get("HUEYPROJ_QUEUE", "hueyproj"),
    "url": os.environ.get("HUEYPROJ_BROKER", "redis://127.0.0.1:6379/5"),
    "immediate": False,
    "consumer": {"workers": 2, "worker_type": "thread"},
}
