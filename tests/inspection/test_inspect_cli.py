"""GIVEN real workers of tests/projects/inspectproj on Redis and on RabbitMQ (``leaky`` runs the
blog recipe's wrapper, ``clean`` a clean one, ``plain`` has no pooldoctor installed), WHEN the
real ``pooldoctor inspect`` asks the fleet, THEN each node gets its verdict, the leak its lost
slots and site, a node that does not exist is reported within --timeout, and the server's view is
matched to the workers' backend pids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .inspect_fleet import BROKERS, FIXTURES, INSPECTPROJ, Fleet, settled_census

APP = ("--app", "inspectproj.celery:app", "--settings", "inspectproj.settings")


def inspect(fleet: Fleet, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url,
           "INSPECTPROJ_BROKER": BROKERS[fleet.broker][0],
           "PYTHONPATH": str(FIXTURES / "leaky")}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-m", "pooldoctor", "inspect", *APP, *args],
                          cwd=INSPECTPROJ, capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip


@pytest.fixture(scope="module")
def report(fleet: Fleet, inspect_database_url: str) -> dict[str, Any]:
    settled_census(fleet)
    names = ",".join(fleet.name(r) for r in ("leaky", "clean", "plain"))
    proc = inspect(fleet, inspect_database_url, "--destination", names, "--timeout", "5",
                   "--format", "json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the leak (and the error of plain) fail the gate
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _node(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in report["nodes"] if n["node"] == name)


def test_leaking_node_is_leak_with_lost_slots_and_site(
    fleet: Fleet, report: dict[str, Any]
) -> None:
    node = _node(report, fleet.name("leaky"))
    assert (node["status"], node["verdict"]) == ("answered", "leak")
    assert sum(p["tasks"] for p in node["processes"]) == 4
    lost = sum(p["lost"] for p in node["processes"])
    assert lost > 0
    leaking = [p for p in node["processes"] if p["lost"]]
    assert all(p["verdict"] == "leak" and p["summary"].startswith("lost ") for p in leaking)
    sites = [s for p in leaking for s in p["leak_sites"]]
    assert sites and sites[0]["kind"] == "lost"
    assert sum(s["count"] for s in sites) == lost
    assert report["verdict"] == "leak"
    assert any(f["code"] == "PD501" and f["subject"] == node["node"] for f in report["findings"])


def test_each_live_process_sends_its_recent_timeline(fleet: Fleet, report: dict[str, Any]) -> None:
    # THEN each process of the leaking node shows its lost checkouts in time, as many as its
    #   census counts lost, each ending when its thread ended; the clean node's all return
    for role, lost_end in (("leaky", "lost"), ("clean", None)):
        for process in _node(report, fleet.name(role))["processes"]:
            timeline = process["timeline"]
            assert timeline is not None, process["pid"]
            lost = [s for s in timeline["spans"] if s["end"] == "lost"]
            assert len(lost) == process["lost"], timeline["spans"]
            assert all(s["ended"] == s["thread_ended"] is not None for s in lost)
            assert len(timeline["tasks"]) == process["tasks"]
            if lost_end is None:
                assert {s["end"] for s in timeline["spans"]} <= {"returned"}


def test_clean_node_is_clean(fleet: Fleet, report: dict[str, Any]) -> None:
    node = _node(report, fleet.name("clean"))
    assert (node["status"], node["verdict"]) == ("answered", "clean")
    assert sum(p["tasks"] for p in node["processes"]) == 4
    assert all((p["lost"], p["held"]) == (0, 0) for p in node["processes"])


def test_node_without_install_is_not_installed(fleet: Fleet, report: dict[str, Any]) -> None:
    node = _node(report, fleet.name("plain"))
    assert (node["status"], node["verdict"], node["processes"]) == ("not-installed", "error", [])
    assert any(f["code"] == "PD507" and f["subject"] == node["node"] for f in report["findings"])


def test_server_view_matched_to_backend_pids(report: dict[str, Any]) -> None:
    server = report["server"]
    assert server["available"] and server["dsn"].startswith("postgresql://")
    processes = [p for n in report["nodes"] for p in n["processes"]]
    matched = [(p, s) for p in processes for s in p["server_sessions"]]
    assert matched, "no worker connection matched to a server session"
    assert all(s["pid"] in p["backend_pids"] for p, s in matched)
    unmatched = {pid for g in server["unmatched"] for pid in g["pids"]}
    assert not unmatched & {s["pid"] for _, s in matched}
    assert server["sessions"] == len(matched) + len(unmatched)


def test_missing_node_reported_within_the_timeout(fleet: Fleet, inspect_database_url: str) -> None:
    ghost = "ghost-nobody@nowhere"
    started = time.monotonic()
    proc = inspect(fleet, inspect_database_url, "--destination", f"{fleet.name('clean')},{ghost}",
                   "--timeout", "2", "--format", "json")  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert (_node(data, ghost)["status"], _node(data, ghost)["verdict"]) == ("no-answer", "error")
    assert _node(data, fleet.name("clean"))["verdict"] == "clean"
    assert [f["code"] for f in data["findings"] if f["subject"] == ghost] == ["PD508"]
    assert elapsed < 2 + 10, f"took {elapsed:.1f} s"


def test_text_report_names_each_node(fleet: Fleet, inspect_database_url: str) -> None:
    names = ",".join(fleet.name(r) for r in ("leaky", "clean", "plain"))
    proc = inspect(fleet, inspect_database_url, "--destination", names, "--timeout", "5",
                   "--fail-on", "never")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pooldoctor inspect — broker ")
    assert f"{fleet.name('leaky')}: leak" in lines
    assert f"{fleet.name('plain')}: error" in lines
    assert (
        "  not-installed: answered without pooldoctor: pooldoctor.celery.install(app) is not "
        "in its Celery module" in lines
    )
    assert lines[-1].startswith(f"LEAK: {fleet.name('leaky')}: ")


def test_the_fleet_as_openmetrics_and_as_html(
    fleet: Fleet, inspect_database_url: str, report: dict[str, Any], tmp_path: Path
) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    names = ",".join(fleet.name(r) for r in ("leaky", "clean"))
    proc = inspect(fleet, inspect_database_url, "--destination", names, "--timeout", "5",
                   "--format", "openmetrics", "--fail-on", "never")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # THEN prometheus-client's own parser reads it, and each process's lost counter is what the
    #   JSON census says: above zero in total on the leaking node, zero on the clean one
    lost: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(proc.stdout):
        if family.name == "pooldoctor_lost_connections":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["node"], sample.labels["pid"])
                    lost[key] = lost.get(key, 0.0) + sample.value
    for role in ("leaky", "clean"):
        for process in _node(report, fleet.name(role))["processes"]:
            assert lost[(fleet.name(role), str(process["pid"]))] == process["lost"]
    assert sum(v for (node, _), v in lost.items() if node == fleet.name("leaky")) > 0
    # AND the same fleet as one HTML page, with each process's timeline and its lost bars
    page = tmp_path / "fleet.html"
    proc = inspect(fleet, inspect_database_url, "--destination", names, "--timeout", "5",
                   "-o", str(page), "--fail-on", "never")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and fleet.name("leaky") in text
    leaky_lost = sum(p["lost"] for p in _node(report, fleet.name("leaky"))["processes"])
    assert text.count('class="span lost') == leaky_lost


def test_watch_writes_a_report_per_interval_until_interrupted(
    fleet: Fleet, inspect_database_url: str
) -> None:
    # GIVEN inspect --watch writing JSON to a pipe (no terminal: one whole report per interval)
    env = {**os.environ, "DATABASE_URL": inspect_database_url,
           "INSPECTPROJ_BROKER": BROKERS[fleet.broker][0],
           "PYTHONPATH": str(FIXTURES / "leaky")}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor", "inspect", *APP, "--destination",
         fleet.name("clean"), "--timeout", "2", "--watch", "0.5", "--format", "json"],
        cwd=INSPECTPROJ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    # WHEN two reports have arrived, and then Ctrl-C
    try:
        reports = [_read_json(proc.stdout), _read_json(proc.stdout)]
    except AssertionError:
        proc.kill()
        raise AssertionError(f"inspect --watch stopped writing: {proc.communicate()[1]}") from None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    # THEN each was a whole report of the asked node, and the exit is the interrupted one
    for one in reports:
        assert one["command"] == "inspect"
        assert [n["node"] for n in one["nodes"]] == [fleet.name("clean")]
        assert one["nodes"][0]["verdict"] == "clean"
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def _read_json(stream: Any) -> dict[str, Any]:
    """One pretty-printed JSON document from a stream of them (each ends with a closing brace
    alone on its line)."""
    lines = []
    for line in stream:
        lines.append(line)
        if line == "}\n":
            break
    assert lines, "inspect --watch stopped writing"
    document: dict[str, Any] = json.loads("".join(lines))
    return document
