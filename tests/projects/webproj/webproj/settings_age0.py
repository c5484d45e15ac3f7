"""No pool; a new connection per request (CONN_MAX_AGE=0)."""

from webproj.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"] = {}  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
