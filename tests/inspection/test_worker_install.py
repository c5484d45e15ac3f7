"""The worker side without a worker: what install() does when it cannot write, and when a
process only imports the Celery module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pooldoctor.core.census import Ledger
from pooldoctor.hosts import live


def test_an_unwritable_census_directory_is_said_once_and_answered_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a temporary directory that is a file, so nothing can be written under it
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setattr(live.tempfile, "gettempdir", lambda: str(blocked))
    installation = live.Installation("default", tracking=True)
    installation.hostname = "w@host"
    # WHEN a process tries to write its snapshot after several tasks
    for _ in range(3):
        installation.write_snapshot()
    # THEN one warning, no exception into the project's task, and the census answers the reason
    warnings = [r for r in caplog.records if "cannot write its census" in r.getMessage()]
    assert len(warnings) == 1
    assert installation.reply() == {
        "error": f"cannot write its census to {blocked / live.ROOT_NAME / 'w@host'}: "
        "Not a directory"
    }


def test_importing_a_module_that_installs_loads_no_celery_worker_code() -> None:
    # A web process imports the project's Celery module too: install() must cost it nothing
    code = (
        "import sys; from celery import Celery; import pooldoctor.celery as p; "
        "p.install(Celery('web')); print('celery.worker.control' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_ledger_keeps_only_the_latest_task_end_times() -> None:
    ledger = Ledger("default", max_task_ends=3)
    for n in range(5):
        ledger.task_finished(f"task {n}")
    assert list(ledger.task_ends) == ["task 2", "task 3", "task 4"]
