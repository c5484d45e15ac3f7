"""A fleet of real worker processes for one subject, whatever the runner: start it, feed it, collect
one record per task, stop it.

Every worker host (Celery in :mod:`pooldoctor.hosts.celery.fleet`, the other task runners through
:func:`run_runner_fleet`) starts its real worker command in its own session, with pooldoctor's
lifeline, in a temporary run directory holding the spec (``spec.json``), the records each worker
process writes per task (``records/``), its leak sites and timelines, and the worker's ``TMPDIR``.
The worker side is :mod:`pooldoctor.hosts.probe_worker`. The process group is killed at the end,
whatever happened; the directory is removed, by the janitor if pooldoctor was killed, which then
also runs the host's purge (its queue or keys on the user's broker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pooldoctor.core import lifeline
from pooldoctor.core.probes.task import TASK, schedule
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject

if TYPE_CHECKING:
    from pooldoctor.hosts.base import RunnerHost

POLL = 0.05
READY_TIMEOUT = 60.0
SILENCE_MARGIN = 5.0
PARTS = ("records", "sites", "timelines", "tmp")
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """End every worker this process started (Ctrl-C, SIGTERM): their groups, children included."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class FleetOptions:
    pool: str
    workers: int
    tasks: int
    warm_parent: bool
    django_fixup: str
    broker: str
    app: str | None
    task_timeout: float
    kill_child_at: int | None = None
    tracking: bool = True
    """Capture each checkout's call stack, so leak sites can be named."""
    runner: str = "celery"
    """The host whose workers run the tasks (``simulate --runner``)."""
    census: bool = True
    """False: the same workers and hooks with no census (no ledger, no collection, no leak
    sites): the baseline ``benchmarks/runner_overhead.py`` measures simulate against."""


@dataclasses.dataclass(frozen=True)
class FleetRecords:
    """What came back from one worker: the raw material the judge works on."""

    subject: Subject
    sent: list[dict[str, Any]]
    """Per task sent: task_id, index, kind, token."""
    records: list[dict[str, Any]]
    ready: dict[str, Any]
    children_died: list[dict[str, str]]
    stop_detail: str | None
    seconds: float
    log: str = ""
    """The worker's own output (shown with --debug)."""
    leak_sites: dict[int, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    """Per worker process (pid): its leak sites as of its last census."""
    timelines: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Per worker process (pid): its connections in time, as of its last census."""


Progress = Callable[[int, int], None]
"""Told (tasks done, tasks sent) as each task's record comes back."""


def tasks_to_send(subject: Subject, options: FleetOptions) -> list[dict[str, Any]]:
    """One entry per task: its id, its index and the probe's kind of task (the project's own task
    runs its own code every time)."""
    kinds = [TASK] * options.tasks if subject.kind == "task" else schedule(options.tasks)
    return [{"task_id": uuid.uuid4().hex, "index": i, "kind": k} for i, k in enumerate(kinds)]


def base_spec(directory: Path, project: ProjectSpec, subject: Subject, options: FleetOptions,
              run_id: str, index: int, sent: list[dict[str, Any]],
              apply_fix: bool) -> dict[str, Any]:  # fmt: skip
    """What every worker side reads (:mod:`pooldoctor.hosts.probe_worker`)."""
    kill = options.kill_child_at
    return {
        "dir": str(directory),
        "runner": options.runner,
        "project": project.to_dict(),
        "subject": subject.wire(),
        "app": options.app,
        "django_fixup": options.django_fixup,
        "warm_parent": options.warm_parent,
        "pool": options.pool,
        "workers": options.workers,
        "broker": options.broker,
        "queue": f"pooldoctor-{run_id}-{index}",
        "task_timeout": options.task_timeout,
        "apply_fix": apply_fix,
        "tracking": options.tracking,
        "application_name": f"pooldoctor:{run_id}:{index}",
        "kill_task_id": sent[kill]["task_id"] if kill is not None and kill < len(sent) else None,
        "census": options.census,
    }


def make_run_directory() -> Path:
    directory = lifeline.temporary_directory("pooldoctor-sim-")
    for part in PARTS:
        (directory / part).mkdir()
    return directory


def start_worker(
    command: list[str], project: ProjectSpec, directory: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Any]:
    """The worker command in its own session, its output in ``worker.log``, holding the lifeline;
    registered so that :func:`kill_all` ends it."""
    log = (directory / "worker.log").open("w")
    proc = subprocess.Popen(
        command, cwd=project.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
        # TMPDIR: what the worker makes there (billiard's pymp-*, multiprocessing's) goes with
        # the run's directory.
        **lifeline.popen_options({**os.environ, **(env or {}),
                                  "POOLDOCTOR_SIMULATE": str(directory / "spec.json"),
                                  "TMPDIR": str(directory / "tmp")}),
    )  # fmt: skip
    with _LIVE_LOCK:
        _LIVE.add(proc)
    return proc, log


def finish_worker(proc: subprocess.Popen[bytes], log: Any, directory: Path) -> str:
    """Stop the worker and return its output (read before stopping: the children's deaths that
    count are the ones before)."""
    log.flush()
    output = (directory / "worker.log").read_text(errors="replace")
    stop(proc)
    with _LIVE_LOCK:
        _LIVE.discard(proc)
    log.close()
    return output


def gather(subject: Subject, sent: list[dict[str, Any]], directory: Path, ready: dict[str, Any],
           died: list[dict[str, str]], detail: str | None, started: float,
           output: str) -> FleetRecords:  # fmt: skip
    from pooldoctor.hosts.base import read_per_process

    records = [json.loads(p.read_text()) for p in sorted((directory / "records").glob("*.json"))]
    if detail and not ready:
        detail = f"{detail}: {last_line(output)}"
    return FleetRecords(subject, sent, records, ready, died, detail,
                        round(time.monotonic() - started, 3), output,
                        read_per_process(directory, "sites"),
                        read_per_process(directory, "timelines"))  # fmt: skip


def run_runner_fleet(host: RunnerHost, project: ProjectSpec, subject: Subject,
                     options: FleetOptions, run_id: str, index: int, *, apply_fix: bool = False,
                     progress: Progress | None = None) -> FleetRecords:  # fmt: skip
    """One fleet of ``host``'s real workers for one subject: the host says how to start them
    (:meth:`RunnerHost.worker_command`), how to send them tasks and what to delete from its broker
    afterwards; everything else is the same for every runner."""
    started = time.monotonic()
    directory = make_run_directory()
    try:
        sent = tasks_to_send(subject, options)
        if progress is not None:
            progress(0, len(sent))  # shown while the worker starts
        spec = base_spec(directory, project, subject, options, run_id, index, sent, apply_fix)
        spec["task_threads"] = host.task_threads(options.pool, options.workers)
        spec.update(host.prepare(spec))
        (directory / "spec.json").write_text(json.dumps(spec))
        if host.purges(spec):
            lifeline.on_removal(directory, [sys.executable, "-m", "pooldoctor.hosts.fleet",
                                            "purge", str(directory / "spec.json")])  # fmt: skip
        proc, log = start_worker(host.worker_command(spec), project, directory, host.env(spec))
        try:
            ready, detail = feed(proc, directory, len(sent), options, progress,
                                 lambda ready: host.enqueue(spec, sent, subject))  # fmt: skip
        finally:
            output = finish_worker(proc, log, directory)
            if host.purges(spec):
                host.purge(spec)
                lifeline.on_removal(directory, None)
        return gather(subject, sent, directory, ready, host.children_died(output), detail,
                      started, output)  # fmt: skip
    finally:
        lifeline.remove(directory)


class FleetError(Exception):
    pass


def feed(proc: subprocess.Popen[bytes], directory: Path, tasks: int, options: FleetOptions,
         progress: Progress | None,
         send: Callable[[dict[str, Any]], None]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """Wait for the worker to be ready, ``send`` it the tasks, wait for their records: what the
    worker said when ready, and why the run stopped early (None: every record came)."""
    try:
        ready = wait_ready(proc, directory)
        send(ready)
        # A hung task is reported by the worker's own watchdog after task_timeout; silence well
        # beyond that means the worker itself is stuck.
        return ready, collect(proc, directory, tasks, options.task_timeout * tasks,
                              options.task_timeout + SILENCE_MARGIN, progress)  # fmt: skip
    except FleetError as exc:
        return {}, str(exc)


def wait_ready(proc: subprocess.Popen[bytes], directory: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    ready = directory / "ready.json"
    while time.monotonic() < deadline:
        if ready.exists():
            return dict(json.loads(ready.read_text()))
        if proc.poll() is not None:
            raise FleetError(f"the worker exited with code {proc.returncode} before it was ready")
        time.sleep(POLL)
    raise FleetError(f"the worker was not ready within {READY_TIMEOUT:g} s")


def collect(proc: subprocess.Popen[bytes], directory: Path, expected: int, limit: float,
            silence: float, progress: Progress | None = None) -> str | None:  # fmt: skip
    """Wait for one record per task; stop early on exhaustion (every further task would only time
    out) or when the worker is gone."""
    records = directory / "records"
    deadline = time.monotonic() + limit
    moved, last = time.monotonic(), 0
    read: set[str] = set()
    while time.monotonic() < deadline:
        found = list(records.glob("*.json"))
        if len(found) != last and progress is not None:
            progress(min(len(found), expected), expected)
        if len(found) >= expected:
            return None
        if len(found) != last:
            moved, last = time.monotonic(), len(found)
        elif time.monotonic() - moved > silence:
            return (f"no task finished for {silence:g} s: {expected - last} tasks hung or never "
                    "came back")  # fmt: skip
        # A record is written once, whole (renamed into place): read each one once, or a long
        # run reads every earlier record again at every poll.
        new = [p for p in found if p.name not in read]
        read.update(p.name for p in new)
        if any('"exhausted"' in p.read_text() for p in new):
            return "stopped at pool exhaustion: further tasks could only wait for the pool timeout"
        if proc.poll() is not None:
            return f"the worker exited with code {proc.returncode}"
        time.sleep(POLL)
    return (
        f"{expected - len(list(records.glob('*.json')))} tasks never came back within {limit:g} s"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children of a warm shutdown that still hang
    proc.wait()


def last_line(output: str) -> str:
    return next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")


if __name__ == "__main__":
    # The removal hook (lifeline.on_removal): what the run whose spec is argv[2] left on the
    # user's broker.
    if sys.argv[1:2] == ["purge"]:
        from pooldoctor.hosts import runner_host

        spec = json.loads(Path(sys.argv[2]).read_text())
        runner_host(spec["runner"]).purge(spec)
