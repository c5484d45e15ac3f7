"""A server simulation's report: the server's line instead of Celery's, requests as the unit, and
the JSON's ``server`` block (``celery`` empty); a saved report renders again the same."""

from __future__ import annotations

import dataclasses
import json

from reporters.conftest import build_simulate_report

from pooldoctor.core.model import SimulateReport, from_dict
from pooldoctor.reporters import render

SERVER = {
    "name": "gunicorn", "version": "27.0.1", "command": "gunicorn --workers 4 --preload ...",
    "interface": "wsgi", "concurrency": "-k sync -w 4 --preload", "workers": 4, "preload": True,
    "worker_class": "sync", "app": "webproj.wsgi_query:application", "requests": 120,
    "concurrent_requests": 8, "forks_imported_app": True,
}  # fmt: skip


def server_report() -> SimulateReport:
    return dataclasses.replace(build_simulate_report(), celery={}, server=SERVER)


def test_the_text_names_the_server_and_counts_requests() -> None:
    text = render(server_report(), "text")
    lines = text.splitlines()
    assert lines[1] == (
        "gunicorn 27.0.1 (WSGI, -k sync -w 4 --preload), app webproj.wsgi_query:application, "
        "120 requests per subject, 8 at a time"
    )
    assert "Celery" not in text
    assert "Requests" in text and "Conn/request" in text
    assert "worker pid 301: unsafe, 3 requests (1 failed)" in text


def test_the_json_carries_the_server_and_renders_again_the_same() -> None:
    report = server_report()
    data = json.loads(render(report, "json"))
    assert data["server"] == SERVER and data["celery"] == {}
    again = from_dict(SimulateReport, data)
    assert render(again, "text") == render(report, "text")


def test_a_celery_simulation_has_no_server() -> None:
    data = json.loads(render(build_simulate_report(), "json"))
    assert data["server"] is None
    assert "Celery 5.5.3" in render(build_simulate_report(), "text")
