"""Run each subject in a fresh process and collect what it reports.

Subject processes run in their own session, so a Ctrl-C in the terminal reaches only pooldoctor,
which then kills every child (their sockets close with them) before exiting. Each holds
pooldoctor's lifeline (:mod:`pooldoctor.core.lifeline`), so it ends with pooldoctor even when
pooldoctor is killed without a chance to clean up. A child that sends
nothing for longer than the per-task limit plus a margin is killed and reported as hung.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from pooldoctor.core import lifeline
from pooldoctor.core.model import (
    StopReason,
    SubjectRun,
    TaskCensus,
    Timeline,
    from_dict,
    leak_site_from_dict,
    task_census_from_dict,
)
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject
from pooldoctor.hosts.web.common import rounds

# Beyond the child's own watchdog: how long the parent waits for any line before killing it.
SILENCE_MARGIN = 10.0

Progress = Callable[[Subject, SubjectRun], None]


class Children:
    """Every subject process alive right now, so an interrupt can end them all."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def start(self, args: list[str], cwd: str) -> subprocess.Popen[str]:
        with self._lock:
            if self.stopping:
                raise KeyboardInterrupt
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                **lifeline.popen_options(),
            )
            self._procs.add(proc)
            return proc

    def forget(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            self.stopping = True
            procs = list(self._procs)
        for proc in procs:
            kill(proc)


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_subjects(
    project: ProjectSpec,
    subjects: Sequence[Subject],
    *,
    tasks: int,
    task_timeout: float,
    jobs: int,
    run_id: str,
    debug: bool = False,
    progress: Progress | None = None,
    tracking: bool = True,
    web: Mapping[str, Any] | None = None,
) -> list[SubjectRun]:
    """Run every subject (``jobs`` at a time), in the order given. ``web``: how the web subjects
    (``--url``, the request modes) send their requests; each of their tasks is a round of them."""
    children = Children()

    def one(index: int, subject: Subject) -> SubjectRun:
        spec: dict[str, Any] = {
            "project": project.to_dict(),
            "subject": subject.wire(),
            "tasks": rounds(web["requests"], web["concurrency"]) if web and subject.web else tasks,
            "web": dict(web) if web else None,
            "task_timeout": task_timeout,
            "application_name": f"pooldoctor:{run_id}:{index}",
            "tracking": tracking,
        }
        run = _run_child(children, spec, subject, project.cwd, task_timeout, debug)
        if progress:
            progress(subject, run)
        return run

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="pooldoctor-subject")
    try:
        futures = [pool.submit(one, i, s) for i, s in enumerate(subjects)]
        return [f.result() for f in futures]
    except BaseException:
        children.kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_child(
    children: Children,
    spec: dict[str, Any],
    subject: Subject,
    cwd: str,
    task_timeout: float,
    debug: bool,
) -> SubjectRun:
    started = time.monotonic()
    proc = children.start([sys.executable, "-m", "pooldoctor.hosts.inprocess.runner"], cwd)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []
    assert proc.stdin and proc.stdout and proc.stderr
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    err_reader = threading.Thread(target=_collect, args=(proc.stderr, stderr), daemon=True)
    err_reader.start()
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()

    census: list[TaskCensus] = []
    info: dict[str, Any] = {}
    forensics: dict[str, Any] = {}
    stop, detail = StopReason.CRASHED, None
    try:
        while True:
            try:
                line = lines.get(timeout=task_timeout + SILENCE_MARGIN)
            except queue.Empty:
                kill(proc)
                stop, detail = StopReason.HUNG, f"no report for {task_timeout + SILENCE_MARGIN:g} s"
                break
            if line is None:
                proc.wait()
                err_reader.join(timeout=1)
                detail = _crash_detail(proc.returncode, stderr)
                break
            event = json.loads(line)
            if event["event"] == "start":
                info = event
            elif event["event"] == "task":
                census.append(task_census_from_dict(event["census"]))
            elif event["event"] == "forensics":
                forensics = event
            elif event["event"] == "stop":
                stop, detail = StopReason(event["reason"]), event["detail"]
                proc.wait()
                break
    finally:
        kill(proc)
        children.forget(proc)
    if debug and stderr:
        sys.stderr.write(f"--- {subject.name} (stderr) ---\n{''.join(stderr)}")
    return SubjectRun(
        subject=subject.name,
        kind=subject.kind,
        description="",
        stop=stop,
        stop_detail=detail,
        tasks_planned=spec["tasks"],
        census=tuple(census),
        pooled=bool(info.get("pooled", False)),
        celery_task=bool(info.get("celery_task", False)),
        seconds=round(time.monotonic() - started, 3),
        leak_sites=tuple(leak_site_from_dict(s) for s in forensics.get("leak_sites", ())),
        checkouts=forensics.get("checkouts", 0),
        returns=forensics.get("returns", 0),
        timeline=from_dict(Timeline, forensics["timeline"]) if "timeline" in forensics else None,
    )


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        if line.strip():
            lines.put(line)
    lines.put(None)


def _collect(stream: IO[str], sink: list[str]) -> None:
    sink.extend(stream)


def _crash_detail(returncode: int | None, stderr: list[str]) -> str:
    how = (
        f"killed by signal {-returncode}"
        if returncode is not None and returncode < 0
        else f"exited with code {returncode}"
    )
    last = next((line.strip() for line in reversed(stderr) if line.strip()), "")
    return f"the subject process {how} before reporting" + (f": {last}" if last else "")
