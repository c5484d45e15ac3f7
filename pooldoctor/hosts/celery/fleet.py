"""One real ``celery worker`` for one subject: start it, feed it probe tasks, collect the records.

The worker runs in its own session with the project's app loaded by
:mod:`pooldoctor.hosts.celery.worker`; the parent sends tasks through the same broker (kombu's
filesystem transport in a temporary directory by default, or the URL given) and waits for one
record per task, bounded in time. The worker's process group is killed at the end, whatever
happened, so no worker outlives the run; the worker holds pooldoctor's lifeline
(:mod:`pooldoctor.core.lifeline`), so it ends even when pooldoctor is killed with no chance to
do so. The run's directory (spec, records, the embedded broker, and the worker's TMPDIR, where
billiard makes its ``pymp-*`` directories) is removed at the end, or by the lifeline's janitor.
On a broker of the user's, what the run created there (its queue, the queue's bindings, its
messages still unacknowledged) is deleted at the end, and by the worker itself if pooldoctor is
killed.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject
from pooldoctor.hosts.fleet import (
    POLL,
    FleetOptions,
    FleetRecords,
    Progress,
    base_spec,
    feed,
    finish_worker,
    gather,
    make_run_directory,
    start_worker,
    tasks_to_send,
)

# Celery's own words when a prefork child dies (celery/concurrency/asynpool.py).
CHILD_DIED = re.compile(r"Process '(?P<name>[^']+)' pid:(?P<pid>\d+) exited with '(?P<how>[^']+)'")


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


def import_celery() -> None:
    """Import Celery on the calling thread before fleet threads start. Its package resolves
    ``Celery`` lazily on first access, and two threads getting there at once can see a half-made
    module (``ImportError: cannot import name 'Celery'``, seen in CI once pooldoctor's CLI
    stopped importing Celery up front)."""
    from celery import Celery  # noqa: F401


def run_fleet(project: ProjectSpec, subject: Subject, options: FleetOptions, run_id: str,
              index: int, *, apply_fix: bool = False,
              progress: Progress | None = None) -> FleetRecords:  # fmt: skip
    started = time.monotonic()
    directory = make_run_directory()
    try:
        return _run_fleet(project, subject, options, run_id, index, apply_fix, directory, started,
                          progress)  # fmt: skip
    finally:
        lifeline.remove(directory)


def _run_fleet(project: ProjectSpec, subject: Subject, options: FleetOptions, run_id: str,
               index: int, apply_fix: bool, directory: Path, started: float,
               progress: Progress | None) -> FleetRecords:  # fmt: skip
    sent = tasks_to_send(subject, options)
    spec = base_spec(directory, project, subject, options, run_id, index, sent, apply_fix)
    queue_name = spec["queue"]
    # No remote control: its pidbox queue and bindings would be more to leave in the broker.
    conf = {**broker_conf(options.broker, directory), "task_default_queue": queue_name,
            "worker_hijack_root_logger": False,
            "worker_enable_remote_control": False}  # fmt: skip
    if progress is not None:
        progress(0, len(sent))  # shown while the worker starts
    spec["celery_conf"] = conf
    spec["task_threads"] = options.workers if options.pool in ("threads", "gevent") else 1
    (directory / "spec.json").write_text(json.dumps(spec))
    if options.broker != "embedded":
        # Should pooldoctor die, the janitor deletes the queue once the worker is gone: the worker's
        # own lifeline deletes it too, but a worker already stopped has none, and a live one
        # could declare it again after its deletion.
        lifeline.on_removal(directory, [sys.executable, "-m", "pooldoctor.hosts.celery.fleet",
                                        "purge", str(directory / "spec.json")])  # fmt: skip
    proc, log = start_worker(
        [sys.executable, "-m", "celery", "-A", "pooldoctor.hosts.celery.worker", "worker",
         "--pool", options.pool, "--concurrency", str(options.workers), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--hostname", f"{queue_name}@%h", "--queues", queue_name],
        project, directory,
    )  # fmt: skip
    try:
        ready, detail = feed(
            proc, directory, len(sent), options, progress,
            lambda ready: _send(conf, ready["task"], sent, queue_name, subject),
        )  # fmt: skip
    finally:
        output = finish_worker(proc, log, directory)
        purge_queue(conf)
        lifeline.on_removal(directory, None)
    died = [m.groupdict() for m in CHILD_DIED.finditer(output)]
    return gather(subject, sent, directory, ready, died, detail, started, output)


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


PURGE_TIMEOUT = 2.0
"""How long deleting the run's queue on the user's broker may take (it may be unreachable)."""


def purge_queue(conf: dict[str, Any]) -> None:
    """Delete what the run created on the user's broker (nothing to do on the embedded one, which
    lives in the run's directory): the queue with its bindings, through kombu; on Redis also the
    run's messages still held as unacknowledged, which kombu would otherwise restore into the
    queue, recreating it, whenever any worker on that database restores unacked messages.
    Never raises, bounded in time: it runs at the end of every run and in a dying worker."""
    if conf["broker_url"].startswith("filesystem:"):
        return
    from celery import Celery

    name = conf["task_default_queue"]
    app = Celery("pooldoctor-purge", set_as_current=False)
    app.conf.update({**conf, "broker_connection_timeout": PURGE_TIMEOUT})
    with contextlib.suppress(Exception), app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=PURGE_TIMEOUT)
        channel = connection.default_channel
        queue = app.amqp.queues[name].bind(channel)
        # kombu's virtual transports (Redis) delete only bindings this process declared.
        queue.declare()
        queue.delete()
        queue.exchange.delete()
        if connection.transport.driver_type == "redis":
            _forget_unacked(channel, name)


def _forget_unacked(channel: Any, queue: str) -> None:
    """Drop the queue's entries from kombu's Redis ``unacked`` hash and its index (each entry is
    ``[message, exchange, routing key]`` in JSON; the hash is shared by every worker there)."""
    client = channel.client
    for tag, raw in list(client.hscan_iter(channel.unacked_key)):
        with contextlib.suppress(ValueError, TypeError):
            _, exchange, routing_key = json.loads(raw)
            if queue in (exchange, routing_key):
                client.hdel(channel.unacked_key, tag)
                client.zrem(channel.unacked_index_key, tag)


if __name__ == "__main__":
    # The removal hook (lifeline.on_removal): the queue of the run whose spec is argv[2].
    if sys.argv[1:2] == ["purge"]:
        purge_queue(json.loads(Path(sys.argv[2]).read_text())["celery_conf"])
