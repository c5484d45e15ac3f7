"""What the benchmark scripts share: processes, the database, the machine, and the report's pieces.

The scripts are not a package: each imports this module as ``_common``, which works because a
script's own directory is ``sys.path[0]`` when it runs as ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "mysite.settings"  # both fixtures'
WRAPPERS = ("mysite.celeryapp:async_task_wrapper", "mysite.celeryapp:async_task()")
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
VERSIONS = ("django", "psycopg", "psycopg-pool", "asgiref", "celery", "pooldoctor")


# --- processes ---------------------------------------------------------------------------------


def handle_signals() -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt, so that the caller's cleanup runs.

    Started in the background of a non-interactive shell, SIGINT arrives ignored, and pooldoctor
    would inherit that and ignore the SIGINT it is stopped with; restore Ctrl-C for both.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def pooldoctor_command() -> list[str]:
    """The ``pooldoctor`` script next to this interpreter, else ``python -m pooldoctor``."""
    script = Path(sys.executable).with_name("pooldoctor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pooldoctor"]


def check_command(database: str) -> list[str]:
    """``pooldoctor check`` with the fixtures' two wrappers and a JSON report, on ``database``."""
    command = [*pooldoctor_command(), "check", "--settings", SETTINGS]
    for wrapper in WRAPPERS:
        command += ["--wrapper", wrapper]
    return [*command, "--format", "json", "--database", database]


def interrupt(proc: subprocess.Popen[Any]) -> None:
    """Stop a pooldoctor process: SIGINT lets it kill its own subject processes (which run in
    their own sessions, out of our reach) before it exits; SIGKILL after 15 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sweep(marker: str, bench_id: str, name: str) -> list[str]:
    """Kill every process whose environment has ``marker=bench_id``, say so on stderr as
    ``name``, and return what it found (Linux only)."""
    found = []
    needle = f"{marker}={bench_id}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # gone already, or not ours to read
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        found.append(f"{pid} {command}")
    for stray in found:
        progress(f"{name}: killed a leftover process: {stray}")
    return found


# --- the database ------------------------------------------------------------------------------


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """``--database URL``, by default $DATABASE_URL, else :data:`DEFAULT_DATABASE`."""
    parser.add_argument(
        "--database",
        metavar="URL",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE,
        help="default: $DATABASE_URL, else %(default)s",
    )


@contextlib.contextmanager
def admin_connection(database: str, name: str) -> Iterator[Any]:
    """An autocommit connection of the benchmark's own, its ``application_name`` ``name``."""
    import psycopg

    with psycopg.connect(
        database, autocommit=True, application_name=name, connect_timeout=5
    ) as conn:
        yield conn


def server_version(database: str, name: str) -> str:
    with admin_connection(database, name) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "unknown"


def stray_sessions(database: str, name: str, pattern: str, wait: float = 5.0) -> list[str]:
    """The sessions whose ``application_name`` is LIKE ``pattern``, still open after up to
    ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with admin_connection(database, name) as conn:
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
                (pattern,),
            ).fetchall()
        if not rows or time.monotonic() > deadline:
            return sorted(str(session) for (session,) in rows)
        time.sleep(0.2)


# --- the checkout and the machine --------------------------------------------------------------


def source_commit() -> str:
    """The checkout's commit, marked dirty when pooldoctor/ (demo projects included) has local
    changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "pooldoctor"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit or 'unknown'}{'+dirty' if changes else ''}"


def environment(database: str, name: str, dists: tuple[str, ...] = VERSIONS) -> dict[str, Any]:
    """Date, platform, CPU cores and versions: Python, ``dists``, PostgreSQL, the checkout."""
    versions = {"python": platform.python_version()}
    for dist in dists:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions["postgresql"] = server_version(database, name)
    versions["commit"] = source_commit()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(terse=True),
        "cpu_cores": os.cpu_count(),
        "versions": versions,
    }


# --- report ------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stats(values: list[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def environment_lines(env: dict[str, Any], *, markdown: bool = False) -> list[str]:
    """The report's date, machine (load average included), versions and checkout lines: aligned
    ``label     text``, or a Markdown list."""
    versions, load = env["versions"], env["load_average"]
    rows = [
        ("date", env["date"]),
        (
            "machine",
            f"{env['platform']}, {env['cpu_cores']} CPU cores, load average "
            f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after (1 min)",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if k != "commit")),
        ("checkout", versions["commit"]),
    ]
    return [f"- {label}: {text}" if markdown else f"{label:10}{text}" for label, text in rows]
