"""Fixtures for the pytest plugin's tests: the database the projects use, and the project."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .project import INI, MODELS, SETTINGS


@pytest.fixture(scope="session")
def plugin_database(database_url: str) -> Iterator[dict[str, str]]:
    """Connection settings for the projects, with a NAME of this session's own."""
    params = conninfo_to_dict(database_url)
    name = f"pooldoctor_plugin_{uuid.uuid4().hex[:12]}"
    yield {
        "host": str(params.get("host", "")),
        "port": str(params.get("port", "")),
        "user": str(params.get("user", "")),
        "password": str(params.get("password", "")),
        "name": name,
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(f"test_{name}")
            )
        )


@pytest.fixture
def project(
    pytester: pytest.Pytester, plugin_database: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """The Django project, written into pytester's directory."""
    monkeypatch.setenv("COLUMNS", "200")  # short summary lines in full
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)  # the ini names the settings
    pytester.makepyfile(settings=SETTINGS.format(**plugin_database))
    pytester.mkpydir("probeapp")
    pytester.makepyfile(**{"probeapp/models": MODELS})
    pytester.makefile(".ini", pytest=INI)
    return pytester
