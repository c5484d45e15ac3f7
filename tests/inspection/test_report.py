"""Every inspect output format on one hand-built fleet: exact text lines, JSON field by field,
JUnit parsed, GitHub workflow commands, and the JSON loaded back by ``pooldoctor report``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pooldoctor.commands import report as saved
from pooldoctor.core.model import InspectReport
from pooldoctor.core.verdict import report_fails as fails
from pooldoctor.core.verdict.live import judge
from pooldoctor.reporters import render
from pooldoctor.reporters.inspect import FORMATS

from .replies import CLEAN, LEAKY, NOT_INSTALLED, NOW, rows, session


@pytest.fixture
def report() -> InspectReport:
    return judge({"leaky@host1": LEAKY, "clean@host2": CLEAN, "plain@host4": NOT_INSTALLED},
                 ("leaky@host1", "clean@host2", "plain@host4"), (),
                 rows(session(9001), session(9002), session(7000, app="psql")),
                 received_at=NOW, broker="redis://:***@127.0.0.1:6379/0", timeout=2.0,
                 environment={"celery": "5.7"}, seconds=2.0)  # fmt: skip


def test_text(report: InspectReport) -> None:
    lines = render(report, "text").splitlines()
    assert lines[:2] == [
        "pooldoctor inspect — broker redis://:***@127.0.0.1:6379/0, database "
        "postgresql://app:***@db:5432/shop",
        "asked every worker, timeout 2 s, answered in 2 s",
    ]
    table = [line.split() for line in lines[3:10]]
    # (two-line headers: rich aligns them at the bottom)
    assert table[0] == ["Inher-"]
    assert table[1] == ["Node", "Process", "Verdict", "Tasks", "Lost", "Held", "Opened", "ited",
                        "Pool", "Server"]  # fmt: skip
    assert table[3] == ["clean@host2", "5243", "clean", "10", "0", "0", "1", "0", "4/4", "1"]
    assert table[4] == ["leaky@host1", "4243", "leak", "10", "3", "0", "4", "0", "4/4", "1"]
    assert table[5] == ["plain@host4", "not-installed", "error"]
    body = "\n".join(lines)
    assert (
        "leaky@host1: leak\n"
        "  worker pid 4242, --pool prefork -c 1, alias default, tracking on\n"
        "  pid 4243: leak: lost 3 pool slots in 10 tasks; the pool runs dry after 3 more tasks\n"
        "    10 tasks (0 failed), 10 checkouts, 7 returned, 4 opened, 0 inherited, pool 4/4\n"
        "    server: backend 9001 idle, - from 127.0.0.1, since 2025-11-27T10:00:00+00:00\n"
        "    LOST    mysite/celeryapp.py:14 in run() via ThreadSensitiveContext executor\n"
    ) in body
    assert "  unmatched: 1 x psql from 127.0.0.1, idle: 7000" in lines
    assert (
        "  3 sessions on postgresql://app:***@db:5432/shop: 2 matched to worker processes" in lines
    )
    assert "clean@host2: clean" not in lines
    assert lines[-1] == report.headline
    assert report.headline.startswith("LEAK: leaky@host1: pid 4243: lost 3 pool slots")


def test_json(report: InspectReport) -> None:
    text = render(report, "json")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert (data["schema"], data["command"], data["verdict"]) == (1, "inspect", "leak")
    assert data["broker"] == "redis://:***@127.0.0.1:6379/0"
    nodes = {n["node"]: n for n in data["nodes"]}
    assert {k: n["status"] for k, n in nodes.items()} == {
        "clean@host2": "answered",
        "leaky@host1": "answered",
        "plain@host4": "not-installed",
    }
    (leaky,) = nodes["leaky@host1"]["processes"]
    assert (leaky["pid"], leaky["verdict"], leaky["lost"], leaky["held"]) == (4243, "leak", 3, 0)
    assert leaky["backend_pids"] == [9001]
    assert [s["pid"] for s in leaky["server_sessions"]] == [9001]
    site = leaky["leak_sites"][0]
    assert set(site) == {"kind", "file", "line", "function", "thread", "count", "reason",
                         "tasks", "thread_names", "stack", "excerpt"}  # fmt: skip
    assert (site["kind"], site["file"], site["line"], site["count"]) == (
        "lost",
        "mysite/celeryapp.py",
        14,
        3,
    )
    unmatched = {"application_name": "psql", "client_addr": "127.0.0.1", "count": 1,
                 "pids": [7000], "state": "idle"}  # fmt: skip
    assert data["server"]["unmatched"] == [unmatched]
    assert [f["code"] for f in data["findings"]] == ["PD501", "PD507"]


def test_junit(report: InspectReport) -> None:
    root = ET.fromstring(render(report, "junit"))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    leaky = cases[("pooldoctor.inspect.leaky@host1", "pid 4243")]
    failure = leaky.find("failure")
    assert failure is not None and failure.get("type") == "leak"
    assert "mysite/celeryapp.py:14 in run()" in (failure.text or "")
    assert cases[("pooldoctor.inspect.clean@host2", "pid 5243")].find("failure") is None
    assert cases[("pooldoctor.inspect.plain@host4", "not-installed")].find("error") is not None
    never = ET.fromstring(render(report, "junit", fail_on="never")).find("testsuite")
    assert never is not None and (never.get("failures"), never.get("errors")) == ("0", "0")


def test_github(report: InspectReport) -> None:
    lines = render(report, "github").splitlines()
    assert lines[0].startswith("::notice title=pooldoctor inspect%3A leak::LEAK: leaky@host1")
    assert lines[1].startswith(
        "::error file=mysite/celeryapp.py,line=14,title=leaky@host1%3A leak (pid 4243)::"
        "leaky@host1 pid 4243: lost 3 pool slots in 10 tasks"
    )
    assert "%0ALOST    mysite/celeryapp.py:14 in run()" in lines[1]
    assert lines[2] == (
        "::error title=plain@host4%3A error::not-installed: answered without pooldoctor: "
        "pooldoctor.celery.install(app) is not in its Celery module"
    )
    assert [line.split("::")[1] for line in lines[3:]] == [
        "error title=PD501",
        "warning title=PD507",
    ]
    pinned = render(report, "github", fail_on="never").splitlines()
    assert pinned[1].startswith("::warning file=mysite/celeryapp.py,line=14,")


def test_fail_on(report: InspectReport) -> None:
    assert fails(report, "leak") and fails(report, "pinned") and not fails(report, "never")


@pytest.mark.parametrize("fmt", FORMATS)
def test_saved_json_renders_the_same(report: InspectReport, fmt: str) -> None:
    loaded = saved.loads(render(report, "json"), "inspect.json")
    assert loaded.command == "inspect"
    assert loaded.report == report
    assert loaded.render(fmt, "leak") == render(report, fmt)
    assert loaded.fails("leak") and loaded.outcome == "leak"
