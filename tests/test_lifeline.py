"""Nothing left behind, ``kill -9`` included: pooldoctor is killed with SIGKILL at its worst
moments, then every process, session, directory and broker key of the run must be gone within
seconds; what a run killed beyond rescue left behind is removed by the next run.

Real processes, no mocks. Each test gives pooldoctor a TMPDIR of its own (other runs on the
machine never count) and a marker in its environment, which every process of the run inherits
(subject processes, Celery workers and their prefork children, the janitor, the embedded
PostgreSQL's processes): a live process carrying the marker is a process of the run. Sessions are
counted on a database of the test's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import FIXTURES, PROJECTS, pooldoctor, pooldoctor_backends, scratch_database

MARKER = "POOLDOCTOR_LIFELINE_TEST"
EXTRAS = PROJECTS / "extras"
HANG = ("--settings", "extras.settings", "--wrapper", "extras.hanging:in_transaction",
        "--modes", "async-to-sync", "--task-timeout", "120")  # fmt: skip
SIMULATE = ("--pool", "prefork", "--workers", "2", "--tasks", "4")
GONE_WITHIN = 10.0
"""How long everything of a killed run may take to disappear (it takes about a second)."""
START_WITHIN = 90.0
POLL = 0.05
REDIS_KILLED = "redis://127.0.0.1:6379/12"
REDIS_FINISHED = "redis://127.0.0.1:6379/13"


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    """The run's TMPDIR, its own; short, unlike ``tmp_path``: the embedded server's socket goes
    there, and a Unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pdlt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def database(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "pooldoctor_lifeline") as url:
        yield url


@dataclasses.dataclass
class Run:
    """One ``pooldoctor`` process started by a test, and how to recognise what it started."""

    proc: subprocess.Popen[bytes]
    marker: str
    tmp: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(*args: str, cwd: Path, tmp: Path, logs: Path,
          python: tuple[str, ...] = ("-m", "pooldoctor")) -> Run:  # fmt: skip
    marker = uuid.uuid4().hex
    env = {**os.environ, "TMPDIR": str(tmp), MARKER: marker}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = logs / f"{marker}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *python, *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    return Run(proc, marker, tmp, log)


def processes(marker: str) -> dict[int, str]:
    """Live processes carrying the marker: pid -> command line."""
    entry = f"{MARKER}={marker}".encode()
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if entry not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if status not in ("Z", "X"):
            found[pid] = cmdline.strip()
    return found


def temp_leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("pooldoctor-", "pymp-")))


def wait_for(condition: Callable[[], Any], run: Run | None = None, within: float = START_WITHIN,
             what: str = "") -> Any:  # fmt: skip
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if run is not None and run.proc.poll() is not None:
            pytest.fail(f"pooldoctor exited ({run.proc.returncode}) before {what}:\n{run.output()}")
        time.sleep(POLL)
    pytest.fail(f"not within {within:g} s: {what}" + (f"\n{run.output()}" if run else ""))


def hung_sessions(database: str) -> list[str]:
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'pooldoctor:%' AND state = 'idle in transaction'"
        ).fetchall()
    return [r[0] for r in rows]


def kill9(run: Run) -> float:
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    return time.monotonic()


def left_behind(run: Run, database: str | None = None,
                keys: Callable[[], set[bytes]] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "processes": processes(run.marker),
        "sessions": pooldoctor_backends(database, this_database=True) if database else [],
        "temporary directories": temp_leftovers(run.tmp),
        "broker keys": sorted(keys()) if keys else [],
    }


def assert_nothing_left(run: Run, killed_at: float, database: str | None = None,
                        keys: Callable[[], set[bytes]] | None = None) -> float:  # fmt: skip
    """Everything of the run gone within GONE_WITHIN seconds of the kill; returns how long."""
    deadline = killed_at + GONE_WITHIN
    left = left_behind(run, database, keys)
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(POLL)
        left = left_behind(run, database, keys)
    assert not any(left.values()), f"left behind {GONE_WITHIN:g} s after kill -9: {left}"
    return time.monotonic() - killed_at


def new_keys(url: str) -> Callable[[], set[bytes]]:
    client = redis.Redis.from_url(url)
    before = set(client.keys("*"))
    return lambda: set(client.keys("*")) - before


def test_check_killed_while_a_task_hangs_leaves_nothing(
    database: str, tmp: Path, tmp_path: Path
) -> None:
    # GIVEN check running a wrapper whose task hangs in a transaction
    run = start("check", *HANG, "--database", database, cwd=EXTRAS, tmp=tmp, logs=tmp_path)
    wait_for(lambda: hung_sessions(database), run, what="a subject hung in a transaction")
    # WHEN pooldoctor is killed with no chance to clean up
    killed_at = kill9(run)
    # THEN the subject process and its session are gone within seconds
    assert_nothing_left(run, killed_at, database)


Moment = Callable[[Run, str], bool]


def _workers_starting(run: Run, database: str) -> bool:
    # A worker is loading: its lifeline is armed at import, before the project's code runs.
    return any(" worker " in c for c in processes(run.marker).values())


def _tasks_hanging(run: Run, database: str) -> bool:
    return bool(hung_sessions(database))


@pytest.mark.parametrize("moment", [_workers_starting, _tasks_hanging],
                         ids=["as-workers-start", "while-tasks-hang"])  # fmt: skip
@pytest.mark.parametrize("broker", ["embedded", REDIS_KILLED])
def test_simulate_killed_mid_run_leaves_nothing(database: str, tmp: Path, tmp_path: Path,
                                                broker: str,
                                                moment: Moment) -> None:  # fmt: skip
    # GIVEN simulate at that moment (its workers' children hang in a transaction)
    keys = new_keys(broker) if broker != "embedded" else None
    run = start("simulate", *HANG, *SIMULATE, "--database", database, "--broker", broker,
                cwd=EXTRAS, tmp=tmp, logs=tmp_path)  # fmt: skip
    wait_for(lambda: moment(run, database), run, what=moment.__name__)
    # WHEN pooldoctor is killed
    killed_at = kill9(run)
    # THEN workers, their children, sessions, the run's directories (pymp-* included) and the
    # run's keys in the broker are gone within seconds
    assert_nothing_left(run, killed_at, database, keys)


def _server_starting(run: Run) -> bool:
    return any((d / "pgdata" / "PG_VERSION").exists() for d in run.tmp.glob("pooldoctor-pg-*"))


def _subjects_running(run: Run) -> bool:
    return any("pooldoctor.hosts.inprocess.runner" in c for c in processes(run.marker).values())


@pytest.mark.parametrize("moment", [_server_starting, _subjects_running],
                         ids=["while-the-server-starts", "while-it-runs"])  # fmt: skip
def test_embedded_check_killed_leaves_no_server(tmp: Path, tmp_path: Path,
                                                moment: Callable[[Run], bool]) -> None:  # fmt: skip
    # GIVEN check on the embedded server, at that moment
    run = start("check", *HANG, "--database", "embedded", cwd=EXTRAS, tmp=tmp, logs=tmp_path)
    wait_for(lambda: moment(run), run, what=moment.__name__)
    # WHEN pooldoctor is killed
    killed_at = kill9(run)
    # THEN the server (its processes carry the marker too) and its directory are gone
    assert_nothing_left(run, killed_at)


@pytest.mark.parametrize("broker", ["embedded", REDIS_FINISHED])
def test_a_finished_simulation_leaves_nothing(database: str, tmp: Path, tmp_path: Path,
                                              broker: str) -> None:  # fmt: skip
    keys = new_keys(broker) if broker != "embedded" else None
    # WHEN a simulation runs to its end
    run = start("simulate", "--settings", "mysite.settings", "--modes", "async-to-sync",
                *SIMULATE, "--database", database, "--broker", broker, "--format", "json",
                cwd=FIXTURES / "fixed", tmp=tmp, logs=tmp_path)  # fmt: skip
    assert run.proc.wait(timeout=120) == 0, run.output()
    # THEN TMPDIR holds no pymp-* (billiard's, one per worker) and no directory of pooldoctor's,
    # and the broker none of the run's keys
    assert_nothing_left(run, time.monotonic(), database, keys)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_owners_directory_is_removed_by_the_next_run(database: str, tmp: Path) -> None:
    # GIVEN a simulation's directory whose owner died (a pymp-* inside, as a worker leaves it)
    stale = tmp / "pooldoctor-sim-stale"
    (stale / "tmp" / "pymp-stale").mkdir(parents=True)
    (stale / ".pooldoctor-owner").write_text(json.dumps({"pid": _dead_pid(), "start": 1}))
    # and one whose owner lives (this test)
    alive = tmp / "pooldoctor-sim-alive"
    alive.mkdir()
    (alive / ".pooldoctor-owner").write_text(json.dumps({"pid": os.getpid(), "start": None}))
    # WHEN pooldoctor runs
    proc = pooldoctor("check", "--settings", "extras.settings", "--modes", "async-to-sync",
                      "--database", database, cwd=EXTRAS, env={"TMPDIR": str(tmp)})  # fmt: skip
    # THEN it removed the dead owner's directory, and said so in one line, and only that one
    assert not stale.exists(), proc.stderr
    assert alive.exists()
    said = [line for line in proc.stderr.splitlines() if "left behind" in line]
    assert len(said) == 1 and str(stale) in said[0], proc.stderr


def test_an_embedded_server_whose_owner_was_killed_is_stopped_by_the_next_run(
    database: str, tmp: Path, tmp_path: Path
) -> None:
    # GIVEN an embedded server whose owner, and the owner's janitor, were killed with SIGKILL
    owner = start("-c", "from pooldoctor.core.embedded import ephemeral_postgres\n"
                  "import threading\nwith ephemeral_postgres():\n"
                  "    print('ready', flush=True)\n    threading.Event().wait()\n",
                  cwd=tmp_path, tmp=tmp, logs=tmp_path, python=())  # fmt: skip
    wait_for(lambda: "ready" in owner.output(), owner, what="the embedded server")
    janitor = [p for p, c in processes(owner.marker).items() if "lifeline janitor" in c]
    assert janitor, processes(owner.marker)
    for pid in janitor:
        os.kill(pid, signal.SIGKILL)
    kill9(owner)
    servers = wait_for(lambda: [c for c in processes(owner.marker).values() if "postgres" in c],
                       within=5, what="the orphaned server")  # fmt: skip
    assert servers and temp_leftovers(owner.tmp)
    # WHEN pooldoctor runs next, with the same TMPDIR
    proc = pooldoctor("check", "--settings", "extras.settings", "--modes", "async-to-sync",
                      "--database", database, cwd=EXTRAS,
                      env={"TMPDIR": str(owner.tmp)})  # fmt: skip
    # THEN the server is stopped and its directory removed, in one line on stderr
    assert "(stopped what ran in it)" in proc.stderr, proc.stderr
    assert_nothing_left(owner, time.monotonic())


def _pipes(pid: int) -> dict[int, str]:
    """The process's fds that are pipes: fd -> pipe:[inode]."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("pipe:"):
                found[int(fd)] = target
    return found


def test_a_child_gets_the_read_end_only_and_a_fork_neither() -> None:
    from pooldoctor.core import lifeline

    # GIVEN this process's lifeline
    options = lifeline.popen_options()
    (read,) = options["pass_fds"]
    inode = _pipes(os.getpid())[read]
    write = next(fd for fd, target in _pipes(os.getpid()).items() if target == inode and fd != read)
    # WHEN a child is started with it, and when this process forks
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, **options)  # fmt: skip
    reader, writer = os.pipe()
    forked = os.fork()
    if forked == 0:  # the fork reports which of the two ends it still has, then leaves
        os.write(writer, json.dumps(sorted(_pipes(os.getpid()))).encode())
        os._exit(0)
    os.waitpid(forked, 0)
    os.close(writer)
    in_fork = set(json.loads(os.read(reader, 65536)))
    os.close(reader)
    try:
        # THEN the child holds the read end (named in its environment), never the write end...
        child_ends = [fd for fd, target in _pipes(child.pid).items() if target == inode]
        assert child_ends == [read]
        environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        assert f"{lifeline.ENV}={read}".encode() in environ
        # ...and a fork (a prefork child, a project's own) has neither: the fds are closed in it
        assert read not in in_fork and write not in in_fork
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
