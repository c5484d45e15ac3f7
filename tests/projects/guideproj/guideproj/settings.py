"""A pool on, the Celery app in guideproj.celery (imported by the package), sync tasks only."""

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
INSTALLED_APPS = ["guideproj"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 4, "timeout": 5}},
    }
}
CELERY_BROKER_URL = "memory://"
