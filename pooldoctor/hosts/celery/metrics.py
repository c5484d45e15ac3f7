"""The live census as Prometheus metrics: ``install(app, metrics_port=9808)`` or
``install(app, metrics_textfile="/var/lib/node_exporter/textfile/pooldoctor.prom")``.

Counting happens when metrics are read, never on the task path: a scrape of the worker's main
process reads the same snapshot files the ``pooldoctor_census`` command answers from (each
prefork child writes its own after every task; solo and threads pools get a fresh snapshot of the
process itself), turns them into :class:`~pooldoctor.core.model.ProcessResult` the way ``pooldoctor
inspect`` does (:func:`pooldoctor.core.verdict.live.judge_process`) and into metric families with
:func:`pooldoctor.reporters.openmetrics.families`. With a text file, a thread of the worker's main
process rewrites the whole node's file (written whole, then renamed, by prometheus-client's
``write_to_textfile``) within TEXTFILE_POLL seconds of a change (a child wrote its snapshot, or
the process itself ran a task), and removes it at shutdown. (Not each child after each task: that
costs each task a render of the whole node, 6 ms with 32 children, see
benchmarks/RESULTS-metrics.md, and children writing at once can leave a file older than one of
them.)

Why not prometheus-client's multiprocess mode, made for prefork children: it needs
``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is imported, keeps an mmap file per
child and metric, and leaves the cleanup of dead children's files to the project. The worker
already keeps one atomically written snapshot per child, which the dead child's own cleanup (or
the next census) removes; its numbers are the ledger's, so the metrics and ``pooldoctor inspect``
always agree. A project that does run prometheus-client in multiprocess mode is not disturbed: the
exporter serves its own registry (never the default one), and :func:`NodeCollector` (public as
``pooldoctor.celery.metrics_collector(app)``) can be registered in the project's own registry
instead, so the ``/metrics`` the worker already serves shows pooldoctor's series too.

prometheus-client (and the rest of pooldoctor that metrics need) is imported only in a worker that
asked for metrics, at worker_init: web processes that import the project's Celery module only
check that it is installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pooldoctor.extras import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Metric

    from pooldoctor.hosts.celery.install import Installation

_log = logging.getLogger(__name__)
TEXTFILE_POLL = 0.5
"""Seconds between two looks at whether the text file needs rewriting."""


class NodeCollector:
    """A prometheus-client collector of the census of the worker node that runs in this process
    (none elsewhere: its families then have no samples)."""

    def __init__(self, installation: Installation, worker: Any = None) -> None:
        require("prometheus_client", "metrics", "pooldoctor's metrics")
        self.installation = installation
        self.worker = worker
        """The worker, whose pool says which children are live (None: every pid still running)."""

    def collect(self) -> Iterator[Metric]:
        from pooldoctor.core.verdict.live import judge_process
        from pooldoctor.reporters.openmetrics import families

        found = self.installation
        node = found.hostname
        if node is None:
            return iter(families((), node="", alias=found.alias))
        received = time.time()
        processes = []
        for data in found.snapshots(self._pool_pids()):
            # A file another pooldoctor version wrote, or torn by hand: that process, not the scrape
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                processes.append(judge_process(node, _slim(data), {}, False, received))
        return iter(families(processes, node=node, alias=found.alias))

    def describe(self) -> Iterator[Metric]:
        """The families without samples: a registry checks names without reading any file."""
        from pooldoctor.reporters.openmetrics import families

        return iter(families((), node="", alias=self.installation.alias))

    def _pool_pids(self) -> set[int] | None:
        with contextlib.suppress(Exception):
            info = self.worker.pool.info
            pids = info.get("processes") if isinstance(info, dict) else None
            if pids:
                return {int(pid) for pid in pids}
        return None


_SITE_FIELDS = ("kind", "file", "line", "function", "thread", "count", "reason")


def _slim(data: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without what no metric shows (the timeline; the leak sites' stacks, source
    and task names): converting those is most of a scrape's time."""
    slim = {k: v for k, v in data.items() if k not in ("timeline", "leak_sites")}
    slim["leak_sites"] = [
        {k: site[k] for k in _SITE_FIELDS if k in site} for site in data.get("leak_sites", ())
    ]
    return slim


class Exporter:
    """What ``install(app, metrics_port=..., metrics_textfile=...)`` runs in a worker."""

    def __init__(
        self,
        installation: Installation,
        *,
        port: int | None,
        addr: str = "0.0.0.0",
        textfile: str | os.PathLike[str] | None = None,
    ) -> None:
        self.collector = NodeCollector(installation)  # says at install() when the extra is missing
        self.installation = installation
        self.port = port
        self.addr = addr
        self.textfile = os.fspath(textfile) if textfile is not None else None
        self.url: str | None = None
        """Where the metrics are served, once they are."""
        self._registry: CollectorRegistry | None = None
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self._writer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._directory: Path | None = None

    def registry(self) -> CollectorRegistry:
        """A registry of its own, holding only the node's collector: never the default one, which
        a project in multiprocess mode (or with its own metrics) uses."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            registry.register(self.collector)
            self._registry = registry
        return self._registry

    # --- the worker's main process ----------------------------------------------------------

    def start(self, worker: Any, directory: Path | None = None) -> None:
        """At worker_init: serve the metrics, if a port was given (a port in use is said once;
        the worker runs on without them), and keep the text file, if one was asked for
        (``directory``: where the node's children write their snapshots)."""
        self.collector.worker = worker
        self._directory = directory
        if self.port is not None:
            self._serve()
        if self.textfile is not None:
            self._stopping = threading.Event()
            self._writer = threading.Thread(
                target=self._keep_textfile, name="pooldoctor-metrics-textfile", daemon=True
            )
            self._writer.start()

    def _serve(self) -> None:
        from prometheus_client import make_wsgi_app

        assert self.port is not None
        try:
            self._server = serve(make_wsgi_app(self.registry()), self.addr, self.port)
        except OSError as exc:
            _log.warning(
                "pooldoctor: cannot serve metrics on %s:%s (%s); the worker runs on without them",
                self.addr, self.port, exc.strerror or exc,
            )  # fmt: skip
            return
        host, port = str(self._server[0].server_address[0]), self._server[0].server_port
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
        # Said when the worker is ready: at worker_init, Celery's logging is not set up yet.
        from celery import signals

        signals.worker_ready.connect(self._say_where, weak=False, dispatch_uid=id(self))

    def _say_where(self, **kwargs: Any) -> None:
        _log.info("pooldoctor: metrics of %s served on %s", self.installation.hostname, self.url)

    def _keep_textfile(self) -> None:
        """Rewrite the text file whenever the census may have changed: a child wrote its snapshot
        (the node's directory changed), or this process ran a task (solo, threads). Looked at
        every TEXTFILE_POLL seconds: a stat, and a render only after a change."""
        seen: tuple[int, int] | None = None
        while not self._stopping.is_set():
            now = self._census_state()
            if now != seen:
                if not self.write_textfile():
                    return
                seen = now
            self._stopping.wait(TEXTFILE_POLL)

    def _census_state(self) -> tuple[int, int]:
        changed = 0
        if self._directory is not None:
            with contextlib.suppress(OSError):
                changed = os.stat(self._directory).st_mtime_ns
        return changed, self.installation.tasks

    def write_textfile(self) -> bool:
        """Write the whole node's metrics to the text file (whole, then renamed, by
        prometheus-client's ``write_to_textfile``). A file that cannot be written is said once,
        then left alone (False)."""
        from prometheus_client import write_to_textfile

        assert self.textfile is not None
        try:
            write_to_textfile(self.textfile, self.registry())
        except OSError as exc:
            _log.warning(
                "pooldoctor: cannot write the worker's metrics to %s (%s); the worker runs on "
                "without them",
                self.textfile, exc.strerror or exc,
            )  # fmt: skip
            return False
        return True

    def stop(self) -> None:
        """At worker_shutdown: stop serving, stop keeping the text file and remove it."""
        if self._server is not None:
            server, thread = self._server
            self._server = None
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        if self._writer is not None:
            self._stopping.set()
            self._writer.join(timeout=5)
            self._writer = None
        if self.textfile is not None:
            with contextlib.suppress(OSError):
                Path(self.textfile).unlink(missing_ok=True)

    # --- a prefork child ----------------------------------------------------------------------

    def forked(self) -> None:
        """In a new prefork child: let go of the parent's listening socket (the parent serves and
        writes the text file; the child only writes its snapshot, as without metrics)."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server[0].socket.close()  # this process's copy only
            self._server = None
        self._writer = None  # the parent's thread: not in this process
        self._stopping = threading.Event()
        self.collector.worker = None
        self._registry = None  # a fork can copy a held lock


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per scrape in the worker's log


def serve(app: Callable[..., Any], addr: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve the WSGI ``app`` (prometheus-client's ``make_wsgi_app``: the text or OpenMetrics
    format, as the scraper asks) on ``addr:port`` (0: any free port) from a daemon thread.

    prometheus-client's ``start_http_server`` does the same, but gives the server back only since
    0.20: without it, the server could not be stopped at shutdown, nor could a prefork child close
    its inherited copy of the listening socket (which would keep the port bound while a child
    outlives its worker)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]  # "" (as for http.server): every interface
    server_class = type("_Server", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(
        str(sockaddr[0]), port, app, server_class, handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, name="pooldoctor-metrics", daemon=True)
    thread.start()
    return server, thread
