"""The independent measurement: the project's ASGI application on a plain server, no pooldoctor,
with the garbage collector off (so that a connection nobody closed keeps its session on the
server instead of dying whenever the collector next runs). Sessions are tagged with
``ORACLE_APP``; the database is ``ORACLE_DATABASE_URL``'s."""

import gc
import os
from urllib.parse import urlsplit

gc.disable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webproj.settings_age60")

from django.conf import settings  # noqa: E402

url = urlsplit(os.environ["ORACLE_DATABASE_URL"])
settings.DATABASES["default"].update(
    NAME=url.path.lstrip("/"),
    HOST=url.hostname or "",
    PORT=str(url.port or 5432),
    USER=url.username or "",
)
settings.DATABASES["default"]["OPTIONS"] = {"application_name": os.environ["ORACLE_APP"]}

from webproj.asgi import application  # noqa: E402,F401
