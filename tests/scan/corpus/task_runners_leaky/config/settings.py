SECRET_KEY = "django-insecure-runners"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_rq", "django_dramatiq", "orders"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 10, "timeout": 5}},
    }
}

RQ_QUEUES = {"default": {"URL": "redis://localhost:6379/0"}}

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": "redis://localhost:6379/1"},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.AdminMiddleware",
    ],
}

HUEY = {"name": "shop", "consumer": {"workers": 4, "worker_type": "thread"}}
