"""One real ``celery worker`` for one subject: start it, feed it probe tasks, collect the records.

The worker runs in its own session with the project's app loaded by
:mod:`pooldoctor.hosts.celery.worker`; the parent sends tasks through the same broker (kombu's
filesystem transport in a temporary directory by default, or the URL given) and waits for one
record per task, bounded in time. The worker's process group is killed at the end, whatever
happened, so no worker outlives the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pooldoctor.core.probes.task import TASK, schedule
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject

# Celery's own words when a prefork child dies (celery/concurrency/asynpool.py).
CHILD_DIED = re.compile(r"Process '(?P<name>[^']+)' pid:(?P<pid>\d+) exited with '(?P<how>[^']+)'")
READY_TIMEOUT = 60.0
SILENCE_MARGIN = 5.0
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """End every worker this process started (Ctrl-C, SIGTERM): their groups, children included."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


POLL = 0.05


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


def broker_conf(broker: str, directory: Path) -> dict[str, Any]:
    if broker != "embedded":
        return {"broker_url": broker}
    queue = directory / "broker"
    queue.mkdir()
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "store_processed": False,
            # kombu keeps its exchange table in ./control by default: never in the project.
            "control_folder": str(directory / "broker-control"),
            "polling_interval": POLL,
        },
    }


def run_fleet(project: ProjectSpec, subject: Subject, options: FleetOptions, run_id: str,
              index: int, *, apply_fix: bool = False) -> FleetRecords:  # fmt: skip
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="pooldoctor-sim-"))
    (directory / "records").mkdir()
    (directory / "sites").mkdir()
    queue_name = f"pooldoctor-{run_id}-{index}"
    conf = {**broker_conf(options.broker, directory), "task_default_queue": queue_name,
            "worker_hijack_root_logger": False}  # fmt: skip
    kinds = [TASK] * options.tasks if subject.kind == "task" else schedule(options.tasks)
    sent = [{"task_id": uuid.uuid4().hex, "index": i, "kind": k} for i, k in enumerate(kinds)]
    spec = {
        "dir": str(directory),
        "project": project.to_dict(),
        "subject": subject.wire(),
        "app": options.app,
        "django_fixup": options.django_fixup,
        "warm_parent": options.warm_parent,
        "pool": options.pool,
        "task_timeout": options.task_timeout,
        "apply_fix": apply_fix,
        "tracking": options.tracking,
        "celery_conf": conf,
        "application_name": f"pooldoctor:{run_id}:{index}",
        "kill_task_id": sent[options.kill_child_at]["task_id"]
        if options.kill_child_at is not None and options.kill_child_at < len(sent)
        else None,
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    log = (directory / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pooldoctor.hosts.celery.worker", "worker",
         "--pool", options.pool, "--concurrency", str(options.workers), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--hostname", f"{queue_name}@%h", "--queues", queue_name],
        cwd=project.cwd,
        env={**os.environ, "POOLDOCTOR_SIMULATE": str(directory / "spec.json")},
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    with _LIVE_LOCK:
        _LIVE.add(proc)
    detail = None
    try:
        ready = _wait_ready(proc, directory)
        _send(conf, ready["task"], sent, queue_name, subject)
        # A hung task is reported by the worker's own watchdog after task_timeout; silence well
        # beyond that means the worker itself is stuck.
        detail = _collect(proc, directory, len(sent), options.task_timeout * len(sent),
                          options.task_timeout + SILENCE_MARGIN)  # fmt: skip
    except _FleetError as exc:
        ready, detail = {}, str(exc)
    finally:
        # Read the log before stopping: the children's deaths that count are the ones before.
        log.flush()
        output = (directory / "worker.log").read_text(errors="replace")
        _stop(proc)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        log.close()
    records = [json.loads(p.read_text()) for p in sorted((directory / "records").glob("*.json"))]
    sites = {int(p.stem): json.loads(p.read_text()) for p in (directory / "sites").glob("*.json")}
    died = [m.groupdict() for m in CHILD_DIED.finditer(output)]
    if detail and not ready:
        detail = f"{detail}: {_last_line(output)}"
    shutil.rmtree(directory, ignore_errors=True)
    return FleetRecords(subject, sent, records, ready, died, detail,
                        round(time.monotonic() - started, 3), output, sites)  # fmt: skip


class _FleetError(Exception):
    pass


def _wait_ready(proc: subprocess.Popen[bytes], directory: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    ready = directory / "ready.json"
    while time.monotonic() < deadline:
        if ready.exists():
            return dict(json.loads(ready.read_text()))
        if proc.poll() is not None:
            raise _FleetError(f"the worker exited with code {proc.returncode} before it was ready")
        time.sleep(POLL)
    raise _FleetError(f"the worker was not ready within {READY_TIMEOUT:g} s")


def _send(conf: dict[str, Any], task: str, sent: list[dict[str, Any]], queue: str,
          subject: Subject) -> None:  # fmt: skip
    from celery import Celery

    producer = Celery("pooldoctor-producer", set_as_current=False)
    options = conf.get("broker_transport_options", {})
    inbox = Path(options["data_folder_in"]) if "data_folder_in" in options else None
    if inbox is not None:
        # kombu's filesystem transport creates a message file before writing it, and its consumer
        # takes files without a lock: a worker polling in between reads an empty message and dies
        # ("Unrecoverable error: JSONDecodeError"). Write them next door, then move each in whole.
        outbox = inbox.parent / "outbox"
        outbox.mkdir(exist_ok=True)
        conf = {**conf, "broker_transport_options": {**options, "data_folder_out": str(outbox)}}
    producer.conf.update(conf)
    with producer.connection_for_write() as connection:
        for item in sent:
            # The project's task gets its own arguments; the probe, the kind of task to be.
            args = list(subject.args) if subject.kind == "task" else [item["kind"]]
            producer.send_task(task, args=args, kwargs=dict(subject.kwargs),
                               task_id=item["task_id"], queue=queue,
                               connection=connection)  # fmt: skip
    if inbox is not None:
        for message in sorted(outbox.iterdir()):
            message.replace(inbox / message.name)


def _collect(proc: subprocess.Popen[bytes], directory: Path, expected: int, limit: float,
             silence: float) -> str | None:  # fmt: skip
    """Wait for one record per task; stop early on exhaustion (every further task would only time
    out) or when the worker is gone."""
    records = directory / "records"
    deadline = time.monotonic() + limit
    progress, last = time.monotonic(), 0
    while time.monotonic() < deadline:
        found = list(records.glob("*.json"))
        if len(found) >= expected:
            return None
        if len(found) != last:
            progress, last = time.monotonic(), len(found)
        elif time.monotonic() - progress > silence:
            return (f"no task finished for {silence:g} s: {expected - last} tasks hung or never "
                    "came back")  # fmt: skip
        if any('"exhausted"' in p.read_text() for p in found):
            return "stopped at pool exhaustion: further tasks could only wait for the pool timeout"
        if proc.poll() is not None:
            return f"the worker exited with code {proc.returncode}"
        time.sleep(POLL)
    return (
        f"{expected - len(list(records.glob('*.json')))} tasks never came back within {limit:g} s"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children of a warm shutdown that still hang
    proc.wait()


def _last_line(output: str) -> str:
    return next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
