"""One subject in its own process: set Django up, run its tasks, report a census after each.

The tasks are the probe, run through a mode or the project's wrapper, or the project's own task
(``--task``), run as a worker runs it.

Started by :mod:`pooldoctor.hosts.inprocess.isolation` as
``python -m pooldoctor.hosts.inprocess.runner`` with a JSON spec on
stdin (stdin, not argv, so no password shows in ``ps``). It writes JSON lines to the original
stdout; anything the project prints goes to stderr instead. A fresh process per subject is the
honest way to measure: threads and connections one subject leaves behind must not colour the next.

A watchdog thread turns the two ways a task can stall into immediate, measured outcomes: a task
waiting for a connection while no pool slot is free (it could only time out: the pool's timeout is
never waited for) and a task running past the per-task time limit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from pooldoctor.core import census, lifeline, project, readonly, verdict
from pooldoctor.core.fixes.load import load_patched
from pooldoctor.core.model import ServerView, StopReason, TaskCensus, to_dict
from pooldoctor.core.probes import get_mode
from pooldoctor.core.probes.task import (
    TASK,
    ProbeFailure,
    make_probe_task,
    schedule,
    unawaited,
)
from pooldoctor.core.project_tasks import task_runner
from pooldoctor.core.subjects import load_wrapper, wrapped_runner
from pooldoctor.errors import PooldoctorError

# How long a request may wait with no free slot before it counts as exhaustion: long enough for
# a connection being returned right now to arrive, far below any pool timeout.
EXHAUSTION_GRACE = 0.25
WATCH_INTERVAL = 0.005


def label(index: int, kind: str) -> str:
    """How the ledger and the reports name a task: ``task 3`` or ``task 4 (raise-after-query)``."""
    return f"task {index + 1}" if kind == TASK else f"task {index + 1} ({kind})"


class Channel:
    """JSON lines to the parent, one writer at a time."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: str, **payload: Any) -> None:
        line = json.dumps({"event": event, **payload}, sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class Subject:
    """A subject set up in this process: the callable to run per task and what to measure."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.project = project.ProjectSpec.from_dict(spec["project"])
        self.alias = self.project.alias
        self.ledger = census.Ledger(self.alias, tracking=spec.get("tracking", True))
        self.observer: census.ServerObserver | None = None
        self.ended: str | None = None
        """How the server ended one of this process's connections (the subject stops then)."""
        self.run_task: Callable[[str], Any] | None = None
        self.celery_task = False
        """Whether the Celery host runs the task (the report's ``evidence.celery_task``)."""
        kind = spec["subject"]["kind"]
        self.web = kind == "url" or (kind == "mode" and get_mode(spec["subject"]["name"]).request)
        """Whether each task is a round of requests through the project's application."""
        self.what_runs = "the task" if kind == "task" else f"the {kind}"
        """Who returned what it runs, for a coroutine nobody awaited."""

    def set_up(self) -> str | None:
        """Load Django and the subject; returns a reason to skip, or None."""
        project.prepare_sys_path(self.project)
        os.environ["DJANGO_SETTINGS_MODULE"] = self.project.settings
        project.import_settings(self.project.settings)
        entry = project.database_settings(self.alias)
        project.apply_overrides(entry, self.project, self.spec["application_name"])
        import django

        django.setup()
        self.ledger.install()
        subject = self.spec["subject"]
        if self.web:  # a URL of the project's, or a request mode: requests through its app
            from pooldoctor.hosts import web

            self.run_task = web.rounds_for(
                subject, self.spec["web"], self.alias, self.project.settings
            )
        elif subject["kind"] == "mode":
            mode = get_mode(subject["name"])
            reason = mode.unavailable()
            if reason:
                return reason
            self.run_task = mode.task(self.alias)
        elif subject["kind"] == "task":
            host, self.run_task = task_runner(subject)
            self.celery_task = host.name == "celery"
        else:  # a fix's proof run loads the wrapper with its source rewritten
            patch = subject.get("patch")
            decorator = load_patched(patch) if patch else load_wrapper(subject["name"])
            host, self.run_task = wrapped_runner(
                subject["name"], decorator, make_probe_task(self.alias)
            )
            self.celery_task = host.name == "celery"
        self.observer = census.ServerObserver(
            project.connection_params(self.alias), self.spec["application_name"]
        )
        return None

    def kinds(self, tasks: int) -> list[str]:
        """What each of ``tasks`` runs: the probe's schedule, or the project's task every time."""
        if self.spec["subject"]["kind"] in ("task", "url"):
            return [TASK] * tasks
        return schedule(tasks)

    def label(self, index: int, kind: str) -> str:
        """How the ledger and the reports name task ``index``: for a web subject, the requests
        of its round (``request 3``, ``requests 5-8``)."""
        if not self.web:
            return label(index, kind)
        size, total = self.spec["web"]["concurrency"], self.spec["web"]["requests"]
        first, last = index * size + 1, min((index + 1) * size, total)
        name = f"request {first}" if first == last else f"requests {first}-{last}"
        return name if kind == TASK else f"{name} ({kind})"

    def pool_configured(self) -> bool:
        from django.conf import settings

        return bool(settings.DATABASES[self.alias].get("OPTIONS", {}).get("pool"))

    def pool(self) -> Any:
        return census.django_pool(self.alias)

    def take_census(
        self, index: int, kind: str, outcome: BaseException | None, seconds: float
    ) -> TaskCensus:
        census.collect_garbage()
        pool = self.pool()
        rows, lost, held = self.ledger.snapshot(pool)
        refused, direct = readonly.take()
        return TaskCensus(
            index=index,
            kind=kind,
            ok=outcome is None,
            error=None if outcome is None else f"{type(outcome).__name__}: {outcome}",
            expected_error=isinstance(outcome, ProbeFailure),
            sqlstate=readonly.sqlstate_of(outcome),
            refused=refused,
            direct=direct,
            seconds=round(seconds, 4),
            pool=census.pool_stats(pool),
            lost=lost,
            held=held,
            connections=tuple(rows),
            server=self.server_view(index),
        )

    def server_view(self, index: int) -> ServerView | None:
        """The server's view from the observer's own connection, or None once the server ended
        that connection (then :attr:`ended` says how, and the subject stops)."""
        if self.observer is None or self.ended:
            return None
        import psycopg

        try:
            return self.observer.view()
        except psycopg.OperationalError as exc:  # its one fixed query: the connection is gone
            self.ended = f"{_describe(exc)}, on the census's own connection after task {index + 1}"
            return None

    def ended_in(self, task: str, outcome: BaseException | None, sqlstate: str | None) -> None:
        """Record how the server ended the task's connection, if that is why it failed (rather
        than what the observer's connection met after it): a SQLSTATE that says so, or (libpq
        lost it without one) a connection of the subject's that psycopg finds broken."""
        if outcome is None:
            return
        if verdict.connection_ended(sqlstate):
            self.ended = f"{sqlstate} {_describe(outcome, sqlstate=False)}, in {task}"
        elif self.ledger.broken():
            self.ended = f"connection lost: {_describe(outcome, sqlstate=False)}, in {task}"

    def send_forensics(self, channel: Channel) -> None:
        """Where the connections lost or held so far were checked out (sent right after a census,
        which has just collected the garbage)."""
        pool = self.pool()
        stand_ins = self.spec["subject"]["kind"] == "mode"  # no project code: the probe is the site
        sites = self.ledger.leak_sites(pool, self.project.cwd, stand_ins=stand_ins)
        channel.send(
            "forensics",
            leak_sites=to_dict(sites),
            checkouts=self.ledger.checkouts,
            returns=self.ledger.returned(pool),
            timeline=self.ledger.timeline_record(pool),
        )

    def clean_up(self) -> None:
        """Close every connection this process opened, so the server sees a clean goodbye."""
        pool = self.pool()
        self.ledger.close_all()
        if pool is not None:
            pool.close(timeout=1.0)
        if self.observer is not None:
            self.observer.close()


def _describe(error: BaseException, *, sqlstate: bool = True) -> str:
    """An error's first line, after its SQLSTATE when it has one."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    state = getattr(error, "sqlstate", None) if sqlstate else None
    return f"{state} {text}" if state else text or type(error).__name__


class Watchdog(threading.Thread):
    """Ends the subject the moment a task can only time out or hang."""

    def __init__(self, subject: Subject, channel: Channel, task_timeout: float) -> None:
        super().__init__(name="pooldoctor-watchdog", daemon=True)
        self.subject = subject
        self.channel = channel
        self.task_timeout = task_timeout
        self.current: tuple[int, str, float] | None = None
        self._lock = threading.Lock()

    def task_started(self, index: int, kind: str) -> None:
        with self._lock:
            self.current = (index, kind, time.monotonic())

    def task_finished(self) -> None:
        with self._lock:
            self.current = None

    def run(self) -> None:
        starved_since: float | None = None
        while True:
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                current = self.current
            if current is None:
                starved_since = None
                continue
            index, kind, started = current
            now = time.monotonic()
            stats = census.pool_stats(self.subject.pool())
            if stats is not None and stats.waiting and stats.free == 0:
                starved_since = starved_since or now
                if now - starved_since >= EXHAUSTION_GRACE:
                    detail = (
                        f"task {index + 1} waited for a connection with 0 of {stats.max_size} "
                        f"pool slots free; it would have failed after the pool timeout "
                        f'({stats.timeout:g} s) with "couldn\'t get a connection"'
                    )
                    self._stop(StopReason.EXHAUSTED, detail, index, kind, now - started)
            else:
                starved_since = None
            if now - started > self.task_timeout:
                name = self.subject.label(index, kind)
                detail = f"{name} did not finish within {self.task_timeout:g} s"
                self._stop(StopReason.HUNG, detail, index, kind, now - started)

    def _stop(self, reason: StopReason, detail: str, index: int, kind: str, seconds: float) -> None:
        try:
            # The task is over for the timeline too: stopped here, a failure.
            self.subject.ledger.task_finished(self.subject.label(index, kind), ok=False)
            snapshot = self.subject.take_census(index, kind, TimeoutError(detail), seconds)
            self.channel.send("task", census=to_dict(snapshot), final=True)
            self.subject.send_forensics(self.channel)
        finally:
            self.channel.send("stop", reason=reason.value, detail=detail)
            _exit(self.subject)


def _exit(subject: Subject) -> None:
    try:
        subject.clean_up()
    finally:
        sys.stderr.flush()
        os._exit(0)


def main() -> None:
    lifeline.arm()  # ends this process (and what it forked) when pooldoctor ends, kill -9 too
    spec = json.loads(sys.stdin.read())
    # The protocol owns the real stdout; the project's prints go to stderr.
    channel = Channel(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)
    subject = Subject(spec)
    try:
        skip = subject.set_up()
    except PooldoctorError as exc:
        channel.send("stop", reason=StopReason.CRASHED.value, detail=str(exc))
        _exit(subject)
    except Exception as exc:
        traceback.print_exc()
        detail = f"setting the subject up raised {type(exc).__name__}: {exc}"
        channel.send("stop", reason=StopReason.CRASHED.value, detail=detail)
        _exit(subject)
    if skip:
        channel.send("stop", reason=StopReason.SKIPPED.value, detail=skip)
        _exit(subject)
    channel.send("start", pooled=subject.pool_configured(), celery_task=subject.celery_task)
    watchdog = Watchdog(subject, channel, spec["task_timeout"])
    watchdog.start()
    assert subject.run_task is not None
    for index, kind in enumerate(subject.kinds(spec["tasks"])):
        watchdog.task_started(index, kind)
        name = subject.label(index, kind)
        token = subject.ledger.task_started(name)
        started = time.monotonic()
        outcome: BaseException | None = None
        try:
            outcome = unawaited(subject.run_task(kind), subject.what_runs)
        except Exception as exc:
            outcome = exc
        subject.ledger.task_finished(name, token, ok=outcome is None)
        watchdog.task_finished()
        snapshot = subject.take_census(index, kind, outcome, time.monotonic() - started)
        channel.send("task", census=to_dict(snapshot))
        subject.ended_in(name, outcome, snapshot.sqlstate)
        if subject.ended:  # what runs after that measures the outage, not the subject
            subject.send_forensics(channel)
            channel.send("stop", reason=StopReason.DISCONNECTED.value, detail=subject.ended)
            _exit(subject)
    subject.send_forensics(channel)
    channel.send("stop", reason=StopReason.DONE.value, detail=None)
    _exit(subject)


if __name__ == "__main__":
    main()
