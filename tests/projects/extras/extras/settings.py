"""Settings for the edge-case tests: pool or not, CONN_MAX_AGE, engine, all from the environment."""

import os

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS: list[str] = []
_pool = {"min_size": 1, "max_size": 4, "timeout": 30}
_options = {"pool": _pool} if os.environ.get("POOL") else {}
DATABASES = {
    "default": {
        "ENGINE": os.environ.get("ENGINE", "django.db.backends.postgresql"),
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "CONN_MAX_AGE": int(os.environ.get("CONN_MAX_AGE", "0")),
        "OPTIONS": _options,
    }
}
