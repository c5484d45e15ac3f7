"""No pool; persistent connections kept for 60 s (CONN_MAX_AGE=60)."""

from webproj.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"] = {}  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
