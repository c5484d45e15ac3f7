"""What ``pooldoctor simulate --server`` adds to each request over the same server without it.

The same gunicorn (``-k sync -w 2``) serves ``tests/projects/webproj`` (pool on) twice per round,
the two interleaved so that drift on the machine hits both alike:

* the baseline: ``gunicorn webproj.wsgi:application``, nothing of pooldoctor's;
* pooldoctor's: the same command line on ``pooldoctor.hosts.servers.app:application``, started the
  way ``simulate --server`` starts it (its lifeline, its spec), each request carrying a token, so
  that the echo rides on its connection and the worker takes its census and writes its record after
  the response, as in a real run.

Each side gets ``--warm`` requests first, then ``--requests`` requests to ``/databases/`` (one
query), ``--concurrency`` at a time, each on a new connection (as simulate sends them); the time
per request is the wall time of those over their number. Server start-up is not counted.
``--no-tracking`` measures without checkout call stacks (``simulate --no-tracking``).

    python benchmarks/servers_overhead.py --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from pooldoctor.core import lifeline
from pooldoctor.core.project import ProjectSpec
from pooldoctor.hosts.servers import ENV, TOKEN_HEADER, ServerOptions, free_port, stop
from pooldoctor.hosts.servers.gunicorn import Gunicorn

WEBPROJ = Path(__file__).resolve().parent.parent / "tests" / "projects" / "webproj"
SETTINGS = "webproj.settings"
PATH = "/databases/"


@contextlib.contextmanager
def server(instrumented: bool, workers: int, tracking: bool = True) -> Iterator[int]:
    """A running gunicorn on a free port, stopped (group and all) on the way out."""
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS}
    directory = Path(tempfile.mkdtemp(prefix="pooldoctor-bench-"))
    options = ServerOptions(server="gunicorn", app=None, workers=workers, preload=False,
                            worker_class="sync", urls=(), requests=0, concurrency=1,
                            task_timeout=10.0)  # fmt: skip
    for part in ("records", "sites", "tmp", "workers"):
        (directory / part).mkdir()
    args = Gunicorn().arguments(port, options, directory, apply_fix=False)
    if instrumented:
        project = ProjectSpec(settings=SETTINGS, alias="default", pythonpath=(), cwd=str(WEBPROJ))
        spec = {"dir": str(directory), "project": project.to_dict(), "app": None,
                "interface": "wsgi", "forks": True, "tracking": tracking,
                "application_name": f"pooldoctor:bench{uuid.uuid4().hex[:6]}:0"}  # fmt: skip
        (directory / "spec.json").write_text(json.dumps(spec))
        env[ENV] = str(directory / "spec.json")
        argv = [sys.executable, "-m", "pooldoctor.hosts.servers", "gunicorn", *args]
    else:
        argv = [sys.executable, "-m", "gunicorn", *args[:-1], "webproj.wsgi:application"]
    proc = subprocess.Popen(argv, cwd=WEBPROJ, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **lifeline.popen_options(env))  # fmt: skip
    try:
        yield port
    finally:
        stop(proc)
        lifeline.remove(directory)


def timed(port: int, requests: int, concurrency: int, warm: int, token: bool) -> float:
    """Seconds per request, once the server answers and after ``warm`` requests."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
                      headers={"Host": "localhost"}) as http:  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                http.get("/no-such-page/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server never answered") from None
                time.sleep(0.05)

        def one(_: int) -> None:
            headers = {TOKEN_HEADER: uuid.uuid4().hex} if token else {}
            response = http.get(PATH, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"{PATH} answered {response.status_code}")

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(warm)))
            started = time.perf_counter()
            list(pool.map(one, range(requests)))
            return (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--no-tracking", action="store_true", help="no checkout call stacks")
    args = parser.parse_args()
    base: list[float] = []
    instrumented: list[float] = []
    for _ in range(args.repeat):
        for side, into in ((False, base), (True, instrumented)):
            with server(side, args.workers, not args.no_tracking) as port:
                into.append(timed(port, args.requests, args.concurrency, args.warm, side))
    ratios = [p / b for p, b in zip(instrumented, base, strict=True)]
    print(f"gunicorn -k sync -w {args.workers}, {args.requests} requests to {PATH}, "
          f"{args.concurrency} at a time, {args.repeat} rounds")  # fmt: skip
    print(f"  plain gunicorn:       {statistics.median(base) * 1000:.2f} ms/request "
          f"({', '.join(f'{b * 1000:.2f}' for b in base)})")  # fmt: skip
    print(f"  under pooldoctor:     {statistics.median(instrumented) * 1000:.2f} ms/request "
          f"({', '.join(f'{p * 1000:.2f}' for p in instrumented)})")  # fmt: skip
    print(
        f"  overhead (median):    {(statistics.median(ratios) - 1) * 100:+.1f} % "
        f"(range {(min(ratios) - 1) * 100:+.1f} to {(max(ratios) - 1) * 100:+.1f} %)"
    )


if __name__ == "__main__":
    main()
