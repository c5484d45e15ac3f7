"""Settings from the environment: DATABASE_URL (PostgreSQL, pooled), DJANGOQPROJ_BROKER (Redis)
and DJANGOQPROJ_QUEUE (the cluster's name: its queue)."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["django_q", "djangoqproj.apps.DjangoQProjConfig"]
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
# No migrations are run for django_q's tables: successes are not saved (save_limit -1), the
# scheduler (which reads its schedules from the database) is off.
Q_CLUSTER = {
    "name": os.environ.get("DJANGOQPROJ_QUEUE", "djangoqproj"),
    "redis": os.environ.get("DJANGOQPROJ_BROKER", "redis://127.0.0.1:6379/6"),
    "workers": 2,
    "timeout": 30,
    "retry": 60,
    "save_limit": -1,
    "scheduler": False,
}
