"""Web servers: the project's WSGI or ASGI application served by real gunicorn, uvicorn or daphne
processes on a loopback port, fed real HTTP requests (httpx), judged per worker process.

What the servers share lives here: a free loopback port; the server's own command line started in
a session of its own with pooldoctor's lifeline armed first (:mod:`.__main__`), so that it and
every worker it forks or spawns die with pooldoctor, ``kill -9`` included; waiting until every
worker process is up and the port answers; the requests, ``concurrency`` at a time, each with a
token that rides on the request's own database connection (:mod:`.app`); one record per request
from the worker process that served it; and the stop, whatever happened (SIGTERM to the group,
SIGKILL after 3 s, the run's directory removed). One module per server says its command line,
its version and which interface it serves (:mod:`.gunicorn`, :mod:`.uvicorn`, :mod:`.daphne`,
listed in :mod:`.registry`); the servers' own libraries are never imported by pooldoctor, only
run.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from pooldoctor.core import lifeline
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject
from pooldoctor.hosts.base import HostFacts, read_per_process

ENV = "POOLDOCTOR_SERVER"
"""Names the run's spec file, for :mod:`.app` in the server's processes."""
MASTER_ENV = "POOLDOCTOR_SERVER_MASTER"
"""The pid of the process pooldoctor started (the server's master, or its only process)."""
TOKEN_HEADER = "X-Pooldoctor-Token"
RESERVED = "/__pooldoctor__/"
ECHO_PATH = RESERVED + "echo"
CENSUS_PATH = RESERVED + "census"
APPLICATION = "pooldoctor.hosts.servers.app:application"
READY_TIMEOUT = 60.0
RECORD_WAIT = 5.0
"""How long a record may take to appear after its response came back (the census runs then)."""
POLL = 0.05
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    server: str
    """``gunicorn``, ``uvicorn`` or ``daphne``."""
    app: str | None
    """The project's WSGI/ASGI application, ``MODULE:ATTR`` (None: next to the settings)."""
    workers: int
    preload: bool
    worker_class: str
    """gunicorn's ``sync``, ``gthread`` or ``uvicorn``."""
    urls: tuple[str, ...]
    requests: int
    concurrency: int
    task_timeout: float
    tracking: bool = True


@dataclasses.dataclass(frozen=True)
class ServerRecords:
    """What came back from one server run: the raw material the fleet judge works on."""

    subject: Subject
    sent: list[dict[str, Any]]
    """Per request sent: task_id (its token), index, kind, status (None: no response)."""
    records: list[dict[str, Any]]
    ready: dict[str, Any]
    """The worker processes that came up (pid -> what each got from its parent), and the
    server's command line."""
    stop_detail: str | None
    seconds: float
    log: str = ""
    leak_sites: dict[int, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    timelines: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)


class Server(abc.ABC):
    """One web server: its command line, its version, what it serves."""

    name: ClassVar[str]
    distribution: ClassVar[str]

    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    def installed(self) -> bool:
        return self.version() != "not installed"

    def interface(self, options: ServerOptions) -> str:
        """``wsgi`` or ``asgi``: what the server calls."""
        return "asgi"

    def forks(self, options: ServerOptions) -> bool:
        """The master imports the application and forks its workers from itself: a connection
        opened at import is inherited by every worker."""
        return False

    def processes(self, options: ServerOptions) -> int:
        """How many processes serve requests."""
        return options.workers

    @abc.abstractmethod
    def arguments(self, port: int, options: ServerOptions, directory: Path,
                  apply_fix: bool) -> list[str]:  # fmt: skip
        """The server's own command line, without its name."""

    def fix(self) -> tuple[str, str] | None:
        """The fix for an application opened before the fork that this server can run: its name
        and its code (None: the server does not fork an imported application)."""
        return None

    def concurrency(self, options: ServerOptions) -> str:
        return f"{options.workers} worker process(es)"

    def facts(self, options: ServerOptions) -> HostFacts:
        return HostFacts(name=self.name, version=self.version(),
                         concurrency=self.concurrency(options))  # fmt: skip


def kill_all() -> None:
    """End every server this process started (Ctrl-C, SIGTERM): their groups, workers included."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ServerError(Exception):
    pass


def run_server(project: ProjectSpec, server: Server, subject: Subject, options: ServerOptions,
               run_id: str, index: int, host: str, *, apply_fix: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ServerRecords:  # fmt: skip
    """``progress``, when given, is told (requests answered, requests to send) as they are."""
    started = time.monotonic()
    directory = lifeline.temporary_directory("pooldoctor-srv-")
    try:
        return _run(project, server, subject, options, run_id, index, host, apply_fix,
                    directory, started, progress)  # fmt: skip
    finally:
        lifeline.remove(directory)


def _run(project: ProjectSpec, server: Server, subject: Subject, options: ServerOptions,
         run_id: str, index: int, host: str, apply_fix: bool, directory: Path,
         started: float, progress: Callable[[int, int], None] | None) -> ServerRecords:  # fmt: skip
    for part in ("records", "sites", "timelines", "tmp", "workers"):
        (directory / part).mkdir()
    if progress is not None:
        progress(0, options.requests)  # shown while the server starts
    spec = {
        "dir": str(directory),
        "project": project.to_dict(),
        "app": options.app,
        "interface": server.interface(options),
        "forks": server.forks(options),
        "tracking": options.tracking,
        "application_name": f"pooldoctor:{run_id}:{index}",
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    port = free_port()
    command = [server.name, *server.arguments(port, options, directory, apply_fix)]
    log = (directory / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor.hosts.servers", *command],
        cwd=project.cwd,
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
        **lifeline.popen_options({**os.environ, ENV: str(directory / "spec.json"),
                                  "TMPDIR": str(directory / "tmp")}),
    )  # fmt: skip
    with _LIVE_LOCK:
        _LIVE.add(proc)
    sent: list[dict[str, Any]] = []
    detail = None
    ready: dict[str, Any] = {}
    try:
        ready = _wait_ready(proc, directory, port, server.processes(options), host)
        ready["command"] = " ".join(command)
        sent = _send(port, host, subject, options, progress)
        detail = _collect(proc, directory, sent)
    except _ServerError as exc:
        detail = str(exc)
    finally:
        log.flush()
        stop(proc)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        log.close()
    output = (directory / "server.log").read_text(errors="replace")
    records = read_records(directory)
    if detail and not ready and not (directory / "failed.txt").exists():
        detail = f"{detail}: {_last_line(output)}"
    return ServerRecords(subject, sent, records, ready, detail,
                         round(time.monotonic() - started, 3), output,
                         read_per_process(directory, "sites"),
                         read_per_process(directory, "timelines"))  # fmt: skip


def _wait_ready(proc: subprocess.Popen[bytes], directory: Path, port: int, processes: int,
                host: str) -> dict[str, Any]:  # fmt: skip
    """Every worker process up (each says so when it starts serving), and the port answering."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    workers = directory / "workers"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _ServerError(f"the server exited with code {proc.returncode} before it "
                                   "was ready")  # fmt: skip
            failed = directory / "failed.txt"
            if failed.exists():
                raise _ServerError(f"the application did not load: {failed.read_text()}")
            up = list(workers.glob("*.json"))
            if len(up) >= processes:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(CENSUS_PATH, headers={"Host": host}).status_code == 200:
                        return {"workers": {p.stem: json.loads(p.read_text()) for p in up}}
            time.sleep(POLL)
    raise _ServerError(f"the server was not ready within {READY_TIMEOUT:g} s")


def _send(port: int, host: str, subject: Subject, options: ServerOptions,
          progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """``requests`` requests, ``concurrency`` at a time, each on a connection of its own (as
    separate clients are), each with its own token."""
    import httpx

    path = ECHO_PATH if subject.kind == "echo" else subject.name
    sent = [{"task_id": uuid.uuid4().hex, "index": i, "kind": "request", "status": None}
            for i in range(options.requests)]  # fmt: skip
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=0)
    done: list[int] = []
    done_lock = threading.Lock()

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=options.task_timeout,
                      limits=limits) as http:  # fmt: skip

        def one(item: dict[str, Any]) -> None:
            headers = {TOKEN_HEADER: item["task_id"], "Host": host}
            try:
                item["status"] = http.get(path, headers=headers).status_code
            except httpx.HTTPError as exc:
                item["error"] = f"{type(exc).__name__}: {exc}"
            if progress is not None:
                with done_lock:
                    done.append(item["index"])
                    progress(len(done), len(sent))

        with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
            list(pool.map(one, sent))
    return sent


def _collect(proc: subprocess.Popen[bytes], directory: Path,
             sent: list[dict[str, Any]]) -> str | None:  # fmt: skip
    """Wait for the record of every request that was answered (its census runs after the
    response); a request that got no response may have no record."""
    answered = {s["task_id"] for s in sent if s["status"] is not None}
    deadline = time.monotonic() + RECORD_WAIT
    while time.monotonic() < deadline:
        found = {r["task_id"] for r in read_records(directory)}
        if answered <= found:
            break
        if proc.poll() is not None:
            return f"the server exited with code {proc.returncode}"
        time.sleep(POLL)
    unanswered = [s for s in sent if s["status"] is None]
    if unanswered:
        return f"{len(unanswered)} request(s) got no response: {unanswered[0].get('error')}"
    return None


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every whole record the worker processes wrote (one JSON line each, per process)."""
    records = []
    for path in sorted((directory / "records").glob("*.jsonl")):
        text = path.read_text()
        lines = text.split("\n")[:-1]  # a line still being written has no end yet
        records += [json.loads(line) for line in lines if line]
    return records


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's group (a graceful stop closes its connections), SIGKILL after
    3 s for what still runs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _last_line(output: str) -> str:
    return next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
