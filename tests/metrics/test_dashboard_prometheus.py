"""The Grafana dashboard's queries, run by a real Prometheus (Debian's package) that scrapes the
exporter's output: every query parses and returns series, as Grafana would show them.

Grafana itself is not in this machine's package registries; Prometheus is, and the queries are
Prometheus's to evaluate. The fleet is the hand-built one of test_openmetrics (two nodes, a
leaking process among them), served over loopback as the exporter serves it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pooldoctor.reporters.openmetrics import render

from .test_dashboard import dashboard, panels
from .test_openmetrics import fleet_report

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
WITHIN = 60.0
"""Seconds for Prometheus to start and hold two scrapes of every series (1 s apart)."""


def _exporter() -> http.server.ThreadingHTTPServer:
    body = render(fleet_report()).encode()

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)


def _free_port() -> int:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    try:
        return int(server.server_address[1])
    finally:
        server.server_close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    exporter = _exporter()
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    target = f"127.0.0.1:{exporter.server_address[1]}"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs: [{{job_name: pooldoctor, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    url = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address={url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        yield f"http://{url}"
    finally:
        proc.kill()
        proc.wait()
        exporter.shutdown()
        exporter.server_close()
        shutil.rmtree(work, ignore_errors=True)


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


def grafana(expr: str) -> str:
    """The expression as Grafana sends it with every node and alias selected."""
    return expr.replace("$node", ".*").replace("$alias", ".*").replace("$__rate_interval", "30s")


def test_every_panel_query_returns_series(prometheus: str) -> None:
    exprs = {grafana(t["expr"]) for p in panels(dashboard()) for t in p.get("targets", ())}
    assert exprs
    empty: set[str] = set(exprs)
    deadline = time.monotonic() + WITHIN
    # Polled, not slept: rates need two scrapes, and Prometheus starts in its own time.
    while empty and time.monotonic() < deadline:
        for expr in sorted(empty):
            with contextlib.suppress(OSError):
                answer = query(prometheus, expr)
                assert answer["status"] == "success", (expr, answer)
                if answer["data"]["result"]:
                    empty.discard(expr)
        if empty:
            time.sleep(0.5)
    assert not empty, f"no series within {WITHIN:g} s for: {sorted(empty)}"


def test_the_lost_connections_add_up_as_the_fleet_says(prometheus: str) -> None:
    report = fleet_report()
    lost = sum(p.lost_slots for p in report.processes)
    expr = grafana(next(
        t["expr"] for p in panels(dashboard()) for t in p.get("targets", ())
        if p["title"].startswith("Connections lost")
    ))  # fmt: skip
    deadline = time.monotonic() + WITHIN
    result: list[Any] = []
    while not result and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            result = query(prometheus, expr)["data"]["result"]
        if not result:
            time.sleep(0.5)
    assert result, expr
    assert float(result[0]["value"][1]) == lost > 0
