"""gunicorn's other worker classes: gthread (WSGI, threads) and uvicorn's worker (ASGI), each
served and measured with the same echo; no --preload, so nothing is inherited or crossed."""

from __future__ import annotations

import pytest

from .serve import Served, serve

REQUESTS = 24


@pytest.mark.parametrize(("worker_class", "interface"), [("gthread", "wsgi"), ("uvicorn", "asgi")])
def test_each_worker_class_serves_the_echo(worker_class: str, interface: str,
                                           srv_database_url: str) -> None:  # fmt: skip
    run: Served = serve(srv_database_url, "--settings", "webproj.settings", "--server", "gunicorn",
                        "--worker-class", worker_class, "--workers", "2", "--requests",
                        str(REQUESTS), "--concurrency", "4")  # fmt: skip
    echo = run.result("echo")
    server = run.report["server"]
    assert (server["interface"], server["worker_class"]) == (interface, worker_class)
    # THEN every request echoed its own reply on its own connection, in 2 worker processes
    assert echo["echoes"] == echo["tasks"] == REQUESTS, run
    assert echo["crossed_replies"] == 0
    assert len(echo["workers"]) == 2
    assert not any(w["inherited_pool"] or w["inherited_connections"] for w in echo["workers"])
    assert run.left == {}
