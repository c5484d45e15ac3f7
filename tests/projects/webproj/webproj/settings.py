"""A web project with Django's pool on (CONN_MAX_AGE must be 0 with a pool)."""

SECRET_KEY = "pooldoctor-tests"
USE_TZ = True
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "webproj.urls"
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
