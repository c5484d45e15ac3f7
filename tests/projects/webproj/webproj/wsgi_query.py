"""The WSGI module of a project that runs a query at import (a cache warmed from the database,
a feature flag read once): under gunicorn --preload it runs in the master, before the fork."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webproj.settings")
application = get_wsgi_application()

from django.db import connection  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_catalog.pg_database")
    DATABASE_COUNT = cursor.fetchone()[0]
