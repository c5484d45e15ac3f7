"""The server runs the tests look at, each once per session (a run starts real servers).

They connect to a database created for this session, so that its sessions are theirs alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import scratch_database

from .serve import Served, serve

# Crossing is a race: 120 requests, 8 at a time, on 4 workers sharing the master's pool crossed
# 27 to 40 replies here in every run. A request whose reply went to another worker waits for
# ever: the client gives up after --task-timeout.
CROSSING = ("--requests", "120", "--concurrency", "8", "--task-timeout", "2")
GUNICORN = ("--server", "gunicorn", "--preload", "--workers", "4")


@pytest.fixture(scope="session")
def srv_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_servers") as url:
        yield url


@pytest.fixture(scope="session")
def gunicorn_query_at_import(srv_database_url: str) -> Served:
    """gunicorn --preload, 4 sync workers, the pool on, a WSGI module that queries at import."""
    return serve(srv_database_url, "--settings", "webproj.settings", *GUNICORN,
                 "--app", "webproj.wsgi_query:application", *CROSSING)  # fmt: skip


@pytest.fixture(scope="session")
def gunicorn_no_query(srv_database_url: str) -> Served:
    """The same server and pool, the project's own wsgi.py (no query at import)."""
    return serve(srv_database_url, "--settings", "webproj.settings", *GUNICORN, *CROSSING,
                 "--url", "/databases/")  # fmt: skip
