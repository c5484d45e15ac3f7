"""A project with its own Celery app (celeryproj.celery:app), for ``pooldoctor simulate --app``."""

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 4, "timeout": 30}},
    }
}
CELERY_BROKER_URL = "memory://"
