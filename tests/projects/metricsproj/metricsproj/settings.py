"""inspectproj's settings (DATABASE_URL, INSPECTPROJ_BROKER), with room in the pool for a dozen
leaking tasks per worker process: the tests send tasks until every child has run a few."""

from inspectproj.settings import *  # noqa: F403
from inspectproj.settings import DATABASES

DATABASES["default"]["OPTIONS"]["pool"]["max_size"] = 16
