from __future__ import annotations

import dataclasses
import json
from typing import Any

from pooldoctor import __version__
from pooldoctor.core.model import Report
from pooldoctor.reporters import json as json_reporter

from .conftest import DEAD_THREAD, LOST_SITE

TIMING_KEYS = {"seconds", "held_seconds"}


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def retimed(report: Report) -> Report:
    """The same report with every timing changed."""

    def census(c: Any) -> Any:
        connections = tuple(
            dataclasses.replace(t, held_seconds=t.held_seconds + 7.5) for t in c.connections
        )
        return dataclasses.replace(c, seconds=c.seconds + 3.0, connections=connections)

    results = tuple(
        dataclasses.replace(
            r,
            seconds=r.seconds + 2.0,
            evidence=dataclasses.replace(r.evidence, census=tuple(census(c) for c in r.census)),
        )
        for r in report.results
    )
    return dataclasses.replace(report, results=results, seconds=report.seconds + 1.0)


def test_top_level_keys_and_types(sample_report: Report) -> None:
    data = json.loads(json_reporter.render(sample_report))

    assert set(data) == {
        "schema",
        "command",
        "pooldoctor",
        "verdict",
        "headline",
        "environment",
        "database",
        "results",
        "findings",
        "fix",
        "seconds",
    }
    assert data["schema"] == 1
    assert data["command"] == "check"
    assert data["pooldoctor"] == __version__
    assert data["verdict"] == "leak"
    assert data["headline"] == sample_report.headline
    assert data["environment"]["django"] == "5.1.4"
    assert sample_report.fix is not None
    assert data["fix"] == {"subject": "async_to_sync", "code": sample_report.fix.code,
                           "applied_to": None, "measured": None, "detail": "",
                           "diff": None, "timeline": None}  # fmt: skip
    assert data["seconds"] == 4.5


def test_database(sample_report: Report) -> None:
    database = json.loads(json_reporter.render(sample_report))["database"]

    assert database == {
        "alias": "default",
        "vendor": "postgresql",
        "dsn": "postgresql://app:***@localhost:5432/app",
        "pool": {"max_size": 4, "timeout": 5.0},
        "conn_max_age": 0,
        "server_version": "16.4",
        "max_connections": 100,
        "source": "settings",
        "health_checks": False,
        "reserved_connections": 3,
    }


def test_results_keep_report_order_with_every_key(sample_report: Report) -> None:
    results = json.loads(json_reporter.render(sample_report))["results"]

    assert [r["subject"] for r in results] == [r.subject for r in sample_report.results]
    for result in results:
        assert set(result) == {
            "subject",
            "kind",
            "description",
            "verdict",
            "summary",
            "tasks",
            "tasks_planned",
            "failed_tasks",
            "lost_slots",
            "lost_per_task",
            "held_connections",
            "tasks_until_exhaustion",
            "stop",
            "stop_detail",
            "symptoms",
            "leak_sites",
            "checkouts",
            "returns",
            "evidence",
            "seconds",
            "fix",
            "timeline",
        }
        assert set(result["evidence"]) == {"pooled", "celery_task", "census"}
        assert isinstance(result["symptoms"], list)
        assert isinstance(result["lost_per_task"], float)
        assert isinstance(result["seconds"], float)

    leak = results[0]
    assert leak["kind"] == "wrapper"
    assert leak["description"] == "run_async_task description"
    assert leak["tasks_planned"] == 3
    assert (leak["checkouts"], leak["returns"]) == (3, 0)
    assert leak["verdict"] == "leak"
    assert leak["tasks"] == 3
    assert leak["failed_tasks"] == 1
    assert leak["lost_slots"] == 3
    assert leak["tasks_until_exhaustion"] == 4
    assert leak["stop"] == "done"
    assert leak["stop_detail"] is None
    assert leak["evidence"]["celery_task"] is True
    assert [c["lost"] for c in leak["evidence"]["census"]] == [1, 2, 3]
    last = leak["evidence"]["census"][-1]
    assert last["pool"]["size"] == 3
    assert last["connections"][1]["thread_alive"] is False
    assert last["server"]["pids"] == [100, 101, 102]

    assert leak["leak_sites"] == [
        {
            "kind": "lost",
            "file": "shop/tasks.py",
            "line": 42,
            "function": "refresh_prices",
            "thread": "ThreadSensitiveContext executor",
            "count": 3,
            "reason": LOST_SITE.reason,
            "tasks": ["task 1 (ok)", "task 2 (raise-after-query)", "task 3 (ok)"],
            "thread_names": [DEAD_THREAD],
            "stack": [
                {
                    "file": None,
                    "line": None,
                    "function": None,
                    "folded": ["django", "asgiref"],
                    "frames": 17,
                },
                {
                    "file": "shop/tasks.py",
                    "line": 42,
                    "function": "refresh_prices",
                    "folded": [],
                    "frames": 1,
                },
                {"file": None, "line": None, "function": None, "folded": ["asyncio"], "frames": 3},
                {"file": "shop/celery.py", "line": 9, "function": "run", "folded": [], "frames": 1},
            ],
            "excerpt": [],
        }
    ]
    assert [s["kind"] for s in results[2]["leak_sites"]] == ["pinned"]
    assert results[1]["leak_sites"] == []

    skipped = results[3]
    assert skipped["stop"] == "skipped"
    assert skipped["stop_detail"] == "asgiref 3.7 has no ThreadSensitiveContext"
    assert skipped["evidence"]["census"] == []


def test_findings(sample_report: Report) -> None:
    findings = json.loads(json_reporter.render(sample_report))["findings"]

    assert findings == [
        {
            "code": "PD101",
            "severity": "error",
            "message": sample_report.findings[0].message,
            "fix": sample_report.findings[0].fix,
            "subject": "run_async_task",
        }
    ]


def test_no_fix_is_null(sample_report: Report) -> None:
    report = dataclasses.replace(sample_report, fix=None)

    assert json.loads(json_reporter.render(report))["fix"] is None


def test_byte_identical_for_identical_input(sample_report: Report) -> None:
    first = json_reporter.render(sample_report)
    second = json_reporter.render(sample_report)

    assert first == second
    assert first.endswith("}\n")


def test_identical_apart_from_timings(sample_report: Report) -> None:
    first = json_reporter.render(sample_report)
    second = json_reporter.render(retimed(sample_report))

    assert first != second
    assert without_timings(json.loads(first)) == without_timings(json.loads(second))
