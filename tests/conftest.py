"""Shared fixtures: a real PostgreSQL, the fixture projects, and running the real CLI.

The database is DATABASE_URL if set, else the local server on 127.0.0.1:5432, else an ephemeral
server from the embedded extra. If none can be had the tests fail, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

# The pytest plugin's tests (tests/plugin) run pytest on a project of their own.
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "pooldoctor" / "demo"
PROJECTS = Path(__file__).resolve().parent / "projects"
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"

LEAKY_WRAPPER = """\
    import asyncio
    from asgiref.sync import ThreadSensitiveContext
    from django.db import close_old_connections

    def run_async(func):
        def wrapper(*args):
            async def main():
                async with ThreadSensitiveContext():
                    return await func(*args)
            try:
                return asyncio.run(main())
            finally:
                close_old_connections()
        return wrapper
"""
"""The widely shared recipe as a scan test writes it: cleanup on the wrong thread (PD303)."""


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: dedented text}`` under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _reachable(url: str) -> str | None:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        problem = _reachable(url)
        if problem:
            pytest.fail(f"DATABASE_URL={url} is not reachable: {problem}")
        yield url
        return
    if _reachable(LOCAL) is None:
        yield LOCAL
        return
    from pooldoctor.core.embedded import ephemeral_postgres

    try:
        with ephemeral_postgres() as settings:
            host = settings["HOST"]
            yield f"postgresql://postgres@/{settings['NAME']}?host={host}"
    except Exception as exc:  # pragma: no cover - only where no server at all can be had
        pytest.fail(f"no PostgreSQL: {LOCAL} unreachable and the embedded one failed: {exc}")


def pooldoctor(
    *args: str, cwd: Path, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    env = {**os.environ, **kwargs.pop("env", {})}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-m", "pooldoctor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def check_json(
    *args: str, cwd: Path, database_url: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    proc = pooldoctor(
        "check", *args, "--database", database_url, "--format", "json", cwd=cwd, env=env or {}
    )
    assert proc.stdout, f"no report; stderr: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def by_subject(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in report["results"]}


def pooldoctor_backends(database_url: str, *, this_database: bool = False) -> list[str]:
    """Sessions pooldoctor opened that are still on the server (``this_database``: only those
    connected to the URL's database, so that other runs on the same server do not count)."""
    only_here = " AND datname = current_database()" if this_database else ""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE application_name LIKE 'pooldoctor:%' AND pid <> pg_backend_pid()" + only_here
        ).fetchall()
    return [r[0] for r in rows]


@contextlib.contextmanager
def scratch_database(database_url: str, prefix: str) -> Iterator[str]:
    """A database of its own on the server for the duration (its sessions are the test's alone,
    whatever else runs on the same server); dropped at the end, sessions and all."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
