"""Bad input: one clear line naming the problem, the documented exit code, no traceback, no
password, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import FIXTURES, PROJECTS, pooldoctor, pooldoctor_backends

EXTRAS = PROJECTS / "extras"
LEAKY = FIXTURES / "leaky"


def _fails(proc: subprocess.CompletedProcess[str], code: int, *expected: str) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, proc.stderr
    for text in expected:
        assert text in error_lines[0]
    return error_lines[0]


def check(
    *args: str,
    cwd: Path = EXTRAS,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    db = ("--database", database_url) if database_url else ()
    return pooldoctor("check", *args, *db, "--modes", "async-to-sync", cwd=cwd, env=env or {})


def test_settings_module_missing_suggests_the_right_one() -> None:
    _fails(
        check("--settings", "extras.setings"),
        3,
        "'extras.setings' not found",
        "did you mean 'extras.settings'",
    )


def test_settings_module_raising() -> None:
    _fails(
        check("--settings", "extras.broken_settings"),
        3,
        "RuntimeError",
        "settings exploded on purpose",
    )


def test_no_settings_at_all_is_a_usage_error() -> None:
    _fails(check(), 2, "no settings module")


def test_alias_not_in_databases(database_url: str) -> None:
    _fails(
        check("--settings", "extras.settings", "--alias", "replica", database_url=database_url),
        3,
        "'replica' is not in DATABASES (defined: default)",
    )


def test_engine_not_postgresql() -> None:
    line = _fails(
        check("--settings", "extras.settings", env={"ENGINE": "django.db.backends.sqlite3"}),
        3,
        "PostgreSQL only",
    )
    assert "sqlite3" in line


def test_conn_max_age_with_pool_is_refused_up_front(database_url: str) -> None:
    _fails(
        check(
            "--settings",
            "extras.settings",
            env={"POOL": "1", "CONN_MAX_AGE": "60"},
            database_url=database_url,
        ),
        3,
        "CONN_MAX_AGE=60",
        "set CONN_MAX_AGE to 0",
    )


def test_database_down_and_password_never_shown() -> None:
    # Port 9 (discard) has no PostgreSQL: the connection is refused at once.
    line = _fails(
        check(
            "--settings",
            "extras.settings",
            "--database",
            "postgresql://someone:s3cr3t-pw@127.0.0.1:9/app",
        ),
        3,
        "cannot connect to database 'default'",
    )
    assert "s3cr3t-pw" not in line


def test_database_missing(database_url: str) -> None:
    url = urlsplit(database_url)._replace(path="/pooldoctor_no_such_db").geturl()
    _fails(
        check("--settings", "extras.settings", "--database", url),
        3,
        "does not exist",
        "--database embedded",
    )


def test_database_url_not_postgresql() -> None:
    _fails(
        check("--settings", "extras.settings", "--database", "mysql://u:hunter2@h/db"),
        2,
        "not a postgresql:// URL",
    )


PASSWORD = "s3cr3t-pw"
DATABASE_FIX = "use postgresql://USER:PASSWORD@HOST:PORT/NAME"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://u:{PASSWORD}@h:abc/db", "port 'abc' is not a number from 1 to 65535"),
        (f"postgresql://u:{PASSWORD}@h:99999/db", "port '99999' is not a number from 1 to 65535"),
        (f"postgresql://u:{PASSWORD}@h:0/db", "port '0' is not a number from 1 to 65535"),
        (f"postgresql://u:{PASSWORD}@h/db?port=-1", "port '-1' is not a number from 1 to 65535"),
        (f"postgresql://u:{PASSWORD}@[::1/db", 'matching "]" in IPv6 host address'),
        (f"postgresql://u:{PASSWORD}@h%zz/db", "invalid percent-encoded token"),
        (f"postgresql://u:{PASSWORD}%zz@h/db", 'invalid percent-encoded token: "***"'),
        (f"postgresql://u:{PASSWORD}@h/db?no_such_option=1", 'invalid URI query parameter'),
    ],
    ids=["port-text", "port-too-big", "port-zero", "query-port", "unclosed-ipv6", "percent",
         "percent-in-password", "query-option"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["check", "simulate"])
def test_malformed_database_url_is_one_line(command: str, url: str, problem: str) -> None:
    # GIVEN a --database URL that cannot be right
    # WHEN check or simulate is asked to use it
    proc = pooldoctor(command, "--settings", "extras.settings", "--database", url, cwd=EXTRAS)
    # THEN one usage line names the problem and the URL's form, and never the password
    line = _fails(proc, 2, "--database 'postgresql://u:***@", problem, DATABASE_FIX)
    assert PASSWORD not in proc.stderr + proc.stdout
    assert "internal error" not in line


@pytest.mark.parametrize(
    ("broker", "problem"),
    [
        (f"redis://u:{PASSWORD}@localhost:abc/0", "'abc'"),
        (f"redis://u:{PASSWORD}@localhost:70000/0", "out of range"),
        (f"amqp://u:{PASSWORD}@localhost:0//", "port 0"),
        (f"redis://u:{PASSWORD}@[::1/0", "IPv6"),
    ],
    ids=["port-text", "port-too-big", "port-zero", "unclosed-ipv6"],
)
def test_malformed_broker_url_is_one_line(broker: str, problem: str) -> None:
    # GIVEN simulate with a --broker URL that cannot be right
    proc = pooldoctor(
        "simulate", "--settings", "extras.settings", "--broker", broker, cwd=EXTRAS, timeout=60
    )
    # THEN one usage line, before kombu reads it (or tries to connect), without the password
    _fails(proc, 2, "--broker", "is malformed", problem, "TRANSPORT://USER:PASSWORD@HOST:PORT")
    assert PASSWORD not in proc.stderr + proc.stdout


@pytest.mark.parametrize("app", ["unclosed_ipv6", "port_not_a_number", "port_out_of_range"])
def test_app_with_a_malformed_broker_url_is_one_line(app: str) -> None:
    # GIVEN a Celery app whose broker_url cannot be right
    # WHEN inspect asks its workers
    proc = pooldoctor("inspect", "--app", f"extras.bad_broker:{app}", "--timeout", "1", cwd=EXTRAS)
    # THEN one line says so, masked, and how to fix it (the project's settings: exit 3)
    _fails(proc, 3, "cannot reach the app's broker", ":***@", "fix the app's broker_url")
    assert PASSWORD not in proc.stderr + proc.stdout


@pytest.mark.parametrize("option", ["--args", "--kwargs"])
@pytest.mark.parametrize("command", ["check", "simulate"])
def test_deeply_nested_task_arguments_are_one_line(command: str, option: str) -> None:
    # GIVEN --args or --kwargs nested far deeper than any task's arguments, deep enough for
    # Python's JSON parser to raise RecursionError (one argument may be at most 128 KiB)
    nested = "[" * 100_000 if option == "--args" else '{"a":' * 20_000
    # WHEN check or simulate reads them
    proc = pooldoctor(command, "--settings", "extras.settings", "--task", "extras.tasks.x",
                      option, nested, cwd=EXTRAS)  # fmt: skip
    # THEN one usage line gives the limit and an example, instead of a RecursionError
    _fails(proc, 2, f"{option} nests more than 32 levels", f"for example {option} '")
    assert "RecursionError" not in proc.stderr


def test_task_arguments_at_the_depth_limit_still_parse() -> None:
    # GIVEN --args nested exactly 32 levels, with brackets inside strings that do not count
    nested = "[" * 31 + '["[[[[", "\\"]]"]' + "]" * 31
    # WHEN check reads them (the task does not exist: that is the next thing it says)
    proc = pooldoctor("check", "--settings", "extras.settings", "--task", "extras.tasks.nowhere",
                      "--args", nested, cwd=EXTRAS)  # fmt: skip
    # THEN the arguments were accepted
    assert "nests more than" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("modes", ["", " , ,"], ids=["empty", "commas"])
@pytest.mark.parametrize("command", ["check", "simulate"])
def test_empty_modes_is_a_usage_error_listing_the_modes(command: str, modes: str) -> None:
    # GIVEN --modes that names nothing (before: every mode, or none, silently)
    proc = pooldoctor(command, "--settings", "extras.settings", "--modes", modes, cwd=EXTRAS)
    # THEN one usage line says so and lists the modes there are
    _fails(proc, 2, "names no mode", "asyncio-run", "async-to-sync",
           "or leave --modes out to run them all")  # fmt: skip


def test_settings_hint_lists_only_the_project_directories(tmp_path: Path) -> None:
    # GIVEN the installed console script (whose bin directory is first on its sys.path) and a
    # --pythonpath directory
    script = Path(sys.executable).parent / "pooldoctor"
    proc = subprocess.run(
        [str(script), "check", "--settings", "extras.setings", "--pythonpath", str(tmp_path)],
        cwd=EXTRAS, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",
                                                                "PYTHONPATH")},
    )  # fmt: skip
    # WHEN the settings module is not found
    line = _fails(proc, 3, "'extras.setings' not found", "did you mean 'extras.settings'")
    # THEN the directories searched are the project's, not the interpreter's
    searched = line.rpartition("--pythonpath: ")[2].rstrip(")").split(", ")
    assert searched == [str(EXTRAS), str(tmp_path)]


@pytest.mark.parametrize(
    ("wrapper", "code", "expected"),
    [
        ("extras.wrappers", 2, "is not MODULE:ATTR"),
        ("extras.nowhere:wrap", 3, "cannot import module 'extras.nowhere'"),
        ("extras.import_error:wrap", 3, "a_module_that_does_not_exist"),
        ("extras.wrappers:factry()", 3, "did you mean 'factory'"),
        ("extras.wrappers:not_callable", 3, "is a int, not a decorator"),
        ("extras.wrappers:returns_int", 3, "returned a int, which cannot be called"),
        ("extras.wrappers:returns_class", 3, "returned the class Task, not something to run"),
    ],
)
def test_bad_wrappers(wrapper: str, code: int, expected: str, database_url: str) -> None:
    _fails(
        check("--settings", "extras.settings", "--wrapper", wrapper, database_url=database_url),
        code,
        expected,
    )


def test_unwritable_output_is_a_usage_error(database_url: str) -> None:
    _fails(
        check("--settings", "extras.settings", "-o", "/nonexistent/dir/report.json",
              database_url=database_url),
        2, "cannot write the report to /nonexistent/dir/report.json: its directory",
    )  # fmt: skip


def test_unknown_mode_suggests_one() -> None:
    proc = pooldoctor(
        "check", "--settings", "extras.settings", "--modes", "asyncio-rnu", cwd=EXTRAS
    )
    _fails(proc, 2, "unknown mode 'asyncio-rnu'", "did you mean 'asyncio-run'")


def test_debug_shows_the_traceback() -> None:
    proc = pooldoctor("check", "--settings", "extras.broken_settings", "--debug", cwd=EXTRAS)
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll a condition until it holds or the deadline passes (no fixed sleeps)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_removes_children_and_connections(signum: int, database_url: str) -> None:
    # GIVEN a check whose wrapper hangs, so subject processes are busy
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor", "check", "--settings", "extras.settings",
         "--wrapper", "extras.wrappers:hangs", "--database", database_url,
         "--task-timeout", "60"],
        cwd=EXTRAS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )  # fmt: skip
    try:
        assert _wait_for(lambda: len(_children(proc.pid)) > 0), "no subject process started"
        children = _children(proc.pid)
        # WHEN the user presses Ctrl-C (or CI cancels the job with SIGTERM)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # THEN pooldoctor exits 130 with one line, and no child or session is left
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    assert [pid for pid in children if _alive(pid)] == []
    assert _wait_for(lambda: pooldoctor_backends(database_url) == [])


def test_embedded_database_runs_and_leaves_nothing(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob("pooldoctor-pg-*"))
    proc = pooldoctor(
        "check",
        "--settings",
        "mysite.settings",
        "--database",
        "embedded",
        "--wrapper",
        "mysite.celeryapp:async_task_wrapper",
        "--modes",
        "async-to-sync",
        "--format",
        "json",
        cwd=LEAKY,
    )
    assert proc.returncode == 1, proc.stderr
    assert '"source": "embedded"' in proc.stdout
    assert set(Path("/tmp").glob("pooldoctor-pg-*")) == before


def test_no_stray_session_after_a_normal_run(database_url: str) -> None:
    proc = check("--settings", "extras.settings", database_url=database_url)
    assert proc.returncode == 0, proc.stderr
    assert _wait_for(lambda: pooldoctor_backends(database_url) == [])
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("command", ["check", "scan"])
def test_a_pyproject_that_is_not_utf8_is_one_line(command: str, tmp_path: Path) -> None:
    # GIVEN a pyproject.toml that is not UTF-8 in the directory pooldoctor runs from
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.pooldoctor]\nwrappers = ["caf\xe9"]\n')
    args = ("--settings", "extras.settings") if command == "check" else ()
    # WHEN pooldoctor reads its [tool.pooldoctor] table, THEN one line, exit 2
    _fails(pooldoctor(command, *args, cwd=tmp_path), 2, "cannot read", "pyproject.toml")
