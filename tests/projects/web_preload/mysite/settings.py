"""A WSGI project served by gunicorn with preload_app = True, a pool, and a query that runs while
the WSGI module loads (PD315). Read by tests/scan only; never imported."""

SECRET_KEY = "web-preload-fixture"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 4, "timeout": 5}},
    }
}
