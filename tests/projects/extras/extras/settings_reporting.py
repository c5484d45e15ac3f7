"""The edge-case settings plus two more aliases, as real projects have them: ``reporting`` on the
same PostgreSQL database (REPORTING_URL) and ``local``, an SQLite file (LOCAL_SQLITE)."""

import os

from extras.settings import *  # noqa: F403
from extras.settings import DATABASES
from pooldoctor.core.project import parse_database_url

DATABASES = {
    **DATABASES,
    "reporting": {
        "ENGINE": "django.db.backends.postgresql",
        **parse_database_url(os.environ.get("REPORTING_URL", "postgresql://postgres@127.0.0.1/x")),
    },
    "local": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LOCAL_SQLITE", ":memory:"),
    },
}
