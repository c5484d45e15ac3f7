"""What ``install(app, metrics_port=...)`` and ``install(app, metrics_textfile=...)`` cost.

1. One scrape of a node with 0, 2, 8 and 32 prefork children (each child's snapshot file a real
   one: the ledger's after 20 clean and 3 leaking tasks, its timeline included): rendering the
   registry in-process, and a GET of the served ``/metrics`` over loopback. The plain way to
   compare with: prometheus-client's default registry (process, platform and GC collectors), as a
   project that serves its own metrics has it.
2. A task's cost: neither the port nor the text file adds anything to the task path (counting
   happens when metrics are read; the text file is rewritten by the worker's main process, at
   most every 0.5 s, after a child's snapshot changed): one rewrite of the whole node is measured
   in-process, next to the snapshot write every child already does after each task. Then end to
   end: a prefork worker (``-c 1``) of tests/projects/metricsproj runs the clean task one at a
   time from send to result, without metrics, with the port, with the text file (interleaved
   rounds, median).

    python benchmarks/metrics_overhead.py [--tasks 200] [--rounds 3] [--database URL]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import _common

PROJECT = _common.ROOT / "tests" / "projects" / "metricsproj"
INSPECTPROJ = _common.ROOT / "tests" / "projects" / "inspectproj"
BROKER = "redis://127.0.0.1:6379/12"
NAME = "pooldoctor-bench-metrics"
CHILDREN = (0, 2, 8, 32)


def _path() -> str:
    return os.pathsep.join([str(PROJECT), str(INSPECTPROJ),
                            str(_common.ROOT / "pooldoctor" / "demo" / "leaky")])  # fmt: skip


def _median_us(func: Any, number: int) -> float:
    times = []
    for _ in range(number):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


# --- in-process: a real snapshot, scrapes, the text file ---------------------------------------


def real_snapshot(database: str) -> tuple[dict[str, Any], float]:
    """A child's snapshot after 20 clean and 3 leaking tasks, and the µs one snapshot write
    takes (what every prefork child already does after each task)."""
    os.environ.update({"DATABASE_URL": database, "INSPECTPROJ_BROKER": BROKER,
                       "DJANGO_SETTINGS_MODULE": "metricsproj.settings"})  # fmt: skip
    sys.path[:0] = _path().split(os.pathsep)
    import django

    django.setup()
    from metricsproj.tasks import clean, leaky

    from pooldoctor.hosts.celery.install import Installation

    found = Installation("default", tracking=True)
    found.hostname = f"bench-{uuid.uuid4().hex[:8]}@snapshot"
    found.pool_kind = "prefork"
    found.ledger.install()
    found.start_process(forked=False)
    try:
        for _ in range(20):
            clean()
        for _ in range(3):
            leaky()
        snapshot = found.snapshot()
        write = _median_us(found.write_snapshot, 500)
        return snapshot, write
    finally:
        found.ledger.uninstall()
        found.on_process_shutdown()
        found.on_worker_shutdown()


def node_of(children: list[int], snapshot: dict[str, Any]) -> Any:
    """A prefork node's main process whose ``children`` (live pids) each wrote ``snapshot``."""
    import json

    from pooldoctor.hosts.celery.install import Installation, node_directory

    found = Installation("default", tracking=True)
    found.hostname = f"bench-{uuid.uuid4().hex[:8]}@metrics{len(children)}"
    found.pool_kind, found.main_pid = "prefork", os.getpid()
    directory = node_directory(found.hostname)
    directory.mkdir(parents=True)
    for pid in children:
        (directory / f"{pid}.json").write_text(json.dumps({**snapshot, "pid": pid}))
    return found


def scrapes(snapshot: dict[str, Any], number: int) -> dict[str, dict[str, float]]:
    """``label -> {render µs, http µs, bytes}`` per node size, and for the default registry."""
    from prometheus_client import REGISTRY, generate_latest, start_http_server

    from pooldoctor.hosts.celery.install import node_directory
    from pooldoctor.hosts.celery.metrics import Exporter

    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(max(CHILDREN))]
    out: dict[str, dict[str, float]] = {}
    try:

        def get(url: str) -> None:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()

        started = start_http_server(0, "127.0.0.1")  # the default registry, the plain way
        server = started[0] if isinstance(started, tuple) else None
        if server is not None:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            out["default registry (plain)"] = {
                "render": _median_us(lambda: generate_latest(REGISTRY), number),
                "http": _median_us(lambda: get(url), number),
                "bytes": len(generate_latest(REGISTRY)),
            }
            server.shutdown()
            server.server_close()
        for n in CHILDREN:
            found = node_of([p.pid for p in sleepers[:n]], snapshot)
            exporter = Exporter(found, port=0, addr="127.0.0.1")
            exporter.start(worker=None)
            registry = exporter.registry()
            assert exporter.url is not None
            url = exporter.url
            try:
                out[f"{n} children"] = {
                    "render": _median_us(functools.partial(generate_latest, registry), number),
                    "http": _median_us(functools.partial(get, url), number),
                    "bytes": len(generate_latest(registry)),
                }
            finally:
                exporter.stop()
                shutil.rmtree(node_directory(str(found.hostname)), ignore_errors=True)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    return out


def textfile_costs(snapshot: dict[str, Any], number: int) -> dict[int, float]:
    """µs per text file rewrite of the whole node (the main process's, after a change) by node
    size."""
    from pooldoctor.hosts.celery.install import node_directory
    from pooldoctor.hosts.celery.metrics import Exporter

    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(max(CHILDREN))]
    out: dict[int, float] = {}
    directory = Path(tempfile.mkdtemp(prefix="pooldoctor-bench-textfile-"))
    try:
        for n in CHILDREN[1:]:
            found = node_of([p.pid for p in sleepers[:n]], snapshot)
            exporter = Exporter(found, port=None, textfile=directory / "pooldoctor.prom")
            try:
                out[n] = _median_us(exporter.write_textfile, number)
            finally:
                exporter.stop()
                shutil.rmtree(node_directory(str(found.hostname)), ignore_errors=True)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        shutil.rmtree(directory, ignore_errors=True)
    return out


# --- end to end: a worker's tasks -------------------------------------------------------------


def per_task(database: str, mode: str, tasks: int, rounds: int, textdir: Path) -> list[float]:
    """Median ms per task of each round, for a worker without metrics, with the port, or with
    the text file."""
    from celery import Celery

    token = uuid.uuid4().hex[:8]
    node, queue = f"bench-{token}@bench", f"bench-{token}"
    env = {**os.environ, "DATABASE_URL": database, "INSPECTPROJ_BROKER": BROKER,
           "INSPECTPROJ_BACKEND": BROKER, "PYTHONPATH": _path()}  # fmt: skip
    for name in ("DJANGO_SETTINGS_MODULE", "METRICSPROJ_PORT", "METRICSPROJ_TEXTFILE"):
        env.pop(name, None)
    if mode == "port":
        env["METRICSPROJ_PORT"] = "0"
    elif mode == "textfile":
        env["METRICSPROJ_TEXTFILE"] = str(textdir / f"{token}.prom")
    command = [str(Path(sys.executable).with_name("celery")), "-A", "metricsproj.celery:app",
               "worker", "-n", node, "-Q", queue, "-P", "prefork", "-c", "1", "-l", "warning",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    app = Celery("bench", broker=BROKER, backend=BROKER)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[node], timeout=0.5):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"worker {node} did not start")
        for _ in range(20):  # warm-up: imports, the pool's first connection
            app.send_task("metricsproj.clean", queue=queue).get(timeout=30)
        medians = []
        for _ in range(rounds):
            times = []
            for _ in range(tasks):
                start = time.perf_counter()
                app.send_task("metricsproj.clean", queue=queue).get(timeout=30)
                times.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(times))
        return medians
    finally:
        proc.send_signal(signal.SIGTERM)  # the worker's warm shutdown stops its child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scrapes", type=int, default=200)
    _common.add_database_option(parser)
    args = parser.parse_args()
    _common.handle_signals()
    env = _common.environment(args.database, NAME, (*_common.VERSIONS, "prometheus-client",
                                                    "redis"))  # fmt: skip
    env["load_average"] = {"before": os.getloadavg()}
    modes = ("plain", "port", "textfile")
    results: dict[str, list[float]] = {}
    textdir = Path(tempfile.mkdtemp(prefix="pooldoctor-bench-metrics-"))
    try:
        for _ in range(2):  # interleaved, against drift
            for mode in modes:
                _common.progress(f"{mode}: {args.rounds} rounds of {args.tasks} tasks")
                results.setdefault(mode, []).extend(
                    per_task(args.database, mode, args.tasks, args.rounds, textdir)
                )
    finally:
        shutil.rmtree(textdir, ignore_errors=True)
    _common.progress("in-process: snapshot, scrapes, text file")
    snapshot, write_us = real_snapshot(args.database)
    scraped = scrapes(snapshot, args.scrapes)
    textfile = textfile_costs(snapshot, args.scrapes)
    env["load_average"]["after"] = os.getloadavg()
    plain = statistics.median(results["plain"])
    lines = [
        "# pooldoctor's metrics: the exporter's cost",
        "",
        *_common.environment_lines(env, markdown=True),
        "",
        "## One scrape",
        "",
        f"A prefork node's main process; each child's snapshot is a real one (20 clean and 3 "
        f"leaking tasks, its timeline of {len(snapshot.get('timeline', {}).get('spans', []))} "
        f"checkouts included). Render: `generate_latest` of the exporter's registry in-process; "
        f"HTTP: a GET of `/metrics` over loopback (urllib, a new connection each time). Median "
        f"of {args.scrapes}. The plain way: prometheus-client's default registry.",
        "",
        "| node | render (µs) | HTTP GET (µs) | bytes |",
        "|---|---|---|---|",
    ]
    for label, row in scraped.items():
        lines.append(f"| {label} | {row['render']:.0f} | {row['http']:.0f} | {row['bytes']:.0f} |")
    lines += [
        "",
        "## A task's cost",
        "",
        "With `metrics_port` or `metrics_textfile` the task path does nothing more than "
        "`install(app)` already does (the snapshot write after each task: "
        f"{write_us:.0f} µs in-process here). The text file is rewritten by the worker's main "
        "process, at most every 0.5 s, when a snapshot changed; one rewrite costs it:",
        "",
        "| children in the node | one text file rewrite (µs) |",
        "|---|---|",
        *(f"| {n} | {us:.0f} |" for n, us in textfile.items()),
        "",
        f"End to end: a prefork worker (`-c 1`) of tests/projects/metricsproj, Redis broker and "
        f"result backend, the clean task (two async ORM reads), one task at a time from send to "
        f"result; {len(results['plain'])} rounds of {args.tasks} tasks each way (interleaved), "
        f"median of the rounds' medians.",
        "",
        "| worker | ms per task (median) | min round | max round | vs without metrics |",
        "|---|---|---|---|---|",
    ]
    for mode, label in zip(modes, ("install(app)", "metrics_port", "metrics_textfile"),
                           strict=True):  # fmt: skip
        s = _common.stats(results[mode])
        diff = statistics.median(results[mode]) - plain
        lines.append(f"| {label} | {s['median']} | {s['min']} | {s['max']} | {diff:+.3f} ms |")
    lines += [
        "",
        f"Command: `python benchmarks/metrics_overhead.py --tasks {args.tasks} --rounds "
        f"{args.rounds}`",
    ]
    text = "\n".join(lines) + "\n"
    (_common.ROOT / "benchmarks" / "RESULTS-metrics.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
