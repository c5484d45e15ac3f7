import os

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = os.environ["SECRET_KEY"]
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "").split(",")

DATABASES["default"]["HOST"] = os.environ.get("DB_HOST", "db")  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
