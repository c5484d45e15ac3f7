"""uvicorn and daphne with CONN_MAX_AGE=60 and no pool: Django's ASGI handler runs each request's
ORM code on a thread that ends with the request, so each request leaves its persistent connection
behind. pooldoctor's census in each worker process counts it; so does the server, independently:
the same application on the same server without pooldoctor (collector off) keeps one session per
request in pg_stat_activity."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from .serve import WEBPROJ, Served, serve, settle

REQUESTS = 24
HERE = Path(__file__).resolve().parent
COMMANDS = {
    "uvicorn": ["-m", "uvicorn", "--workers", "2", "--log-level", "warning", "--host",
                "127.0.0.1", "--port", "{port}", "nogc_asgi:application"],
    "daphne": ["-m", "daphne", "--verbosity", "0", "--bind", "127.0.0.1", "--port", "{port}",
               "nogc_asgi:application"],
}  # fmt: skip
ARGS = {"uvicorn": ("--workers", "2"), "daphne": ()}


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def asgi_run(request: pytest.FixtureRequest, srv_database_url: str) -> tuple[str, Served]:
    server = request.param
    return server, serve(srv_database_url, "--settings", "webproj.settings_age60", "--server",
                         server, *ARGS[server], "--requests", str(REQUESTS), "--concurrency",
                         "4", "--url", "/databases/")  # fmt: skip


def test_each_request_leaves_its_session_behind(asgi_run: tuple[str, Served]) -> None:
    server, run = asgi_run
    assert run.code == 1, run
    assert run.report["verdict"] == "leak", run
    assert run.report["server"]["interface"] == "asgi"
    for subject in ("echo", "/databases/"):
        result = run.result(subject)
        # THEN every request's connection was lost, counted by the census of the worker that
        #   served it, and nothing crossed (no fork of an imported application here)
        assert result["verdict"] == "leak", run
        assert result["crossed_replies"] == 0
        assert result["echoes"] == REQUESTS
        assert sum(w["lost_slots"] for w in result["workers"]) == REQUESTS, run
        assert len(result["workers"]) == (2 if server == "uvicorn" else 1)
    assert not any(r["kind"] == "fix" for r in run.report["results"])
    assert run.left == {}, run.left


def test_the_server_sees_the_same_sessions_left_behind(asgi_run: tuple[str, Served],
                                                       srv_database_url: str) -> None:  # fmt: skip
    server, _ = asgi_run
    tag = f"pdtest-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(srv_database_url, autocommit=True) as conn:
        left = oracle(server, srv_database_url, tag, conn)
    # THEN one session per request is still open on the server after the requests
    assert left == REQUESTS


def oracle(server: str, database_url: str, tag: str, conn: psycopg.Connection) -> int:
    with socket_port() as port:
        argv = [a.format(port=port) for a in COMMANDS[server]]
    env = {**os.environ, "ORACLE_DATABASE_URL": database_url, "ORACLE_APP": tag,
           "PYTHONPATH": os.pathsep.join([str(HERE), str(WEBPROJ)])}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen([sys.executable, *argv], cwd=WEBPROJ, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": "localhost"},
                          timeout=10) as http:  # fmt: skip
            wait_accepting(http, proc)
            with ThreadPoolExecutor(max_workers=4) as pool:
                statuses = list(pool.map(lambda _: http.get("/databases/").status_code,
                                         range(REQUESTS)))  # fmt: skip
        assert statuses == [200] * REQUESTS
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        row = conn.execute(query, (tag,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        settle_sessions(conn, tag)


def wait_accepting(http: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    def up() -> dict[int, str]:
        assert proc.poll() is None, f"the oracle's server exited with {proc.returncode}"
        try:
            http.get("/no-such-page/")  # a 404: Django answers it without a query
        except httpx.TransportError:
            return {0: "not yet"}
        return {}

    assert settle(up) == {}, "the oracle's server never answered"


def settle_sessions(conn: psycopg.Connection, tag: str) -> None:
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    settle(lambda: {r[0]: "" for r in conn.execute(query, (tag,)).fetchall()})


class socket_port:
    """A free loopback port (the server binds it a moment later)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
