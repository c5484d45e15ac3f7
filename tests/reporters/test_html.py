"""The HTML report's structure: hand-built reports (no Django, no database), the page parsed.

A check report with a leaky subject (4 connections lost, each ending where its thread ended) and
its fixed twin (every connection returned); a simulation with two worker processes (one using a
connection its parent opened, with crossed replies); an inspection without timelines.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser

import pytest

from pooldoctor.core.model import (
    ConnectionSpan,
    DatabaseInfo,
    Evidence,
    Finding,
    Fix,
    FleetResult,
    InspectReport,
    LeakKind,
    LeakSite,
    NodeResult,
    NodeStatus,
    PinnedConnection,
    ProcessResult,
    Report,
    ServerResult,
    Severity,
    SimulateReport,
    SourceLine,
    SpanEnd,
    StopReason,
    SubjectResult,
    TaskCensus,
    TaskSpan,
    Timeline,
    Verdict,
)
from pooldoctor.core.serde import from_dict, to_dict
from pooldoctor.reporters import html as html_reporter

from .conftest import pool

TASKS = 4
TASK_SECONDS = 0.04
GAP = 0.01
THREAD_END_DELAY = 0.002
EXECUTOR = "ThreadSensitiveContext executor"
SITE_FILE = "shop/tasks.py"
DIFF = (
    "--- a/shop/tasks.py\n+++ b/shop/tasks.py\n@@ -40,3 +40,3 @@\n"
    "-    with ThreadSensitiveContext():\n+    async_to_sync(refresh)()\n"
)


def task_window(i: int) -> tuple[float, float]:
    start = i * (TASK_SECONDS + GAP)
    return start, start + TASK_SECONDS


def census(i: int, *, lost: int, size: int, available: int, ok: bool = True) -> TaskCensus:
    return TaskCensus(
        index=i,
        kind="ok" if ok else "raise-after-query",
        ok=ok,
        error=None if ok else "ProbeFailure: raised on purpose",
        expected_error=not ok,
        seconds=TASK_SECONDS,
        pool=pool(size, available),
        lost=lost,
        held=0,
        connections=(),
        server=None,
    )


def tasks() -> tuple[TaskSpan, ...]:
    return tuple(TaskSpan(f"task {i + 1}", *task_window(i), ok=i != 2) for i in range(TASKS))


def leaky_timeline() -> Timeline:
    """Each task's own executor thread checks a connection out and ends without returning it;
    the main thread's own checkout is returned."""
    spans = []
    for i in range(TASKS):
        start, end = task_window(i)
        died = end + THREAD_END_DELAY
        spans.append(
            ConnectionSpan(
                connection=i + 1,
                thread=f"ThreadPoolExecutor-{i}_0",
                thread_role=EXECUTOR,
                task=f"task {i + 1}",
                checked_out=start + 0.005,
                ended=died,
                end=SpanEnd.LOST,
                thread_ended=died,
            )
        )
        spans.append(
            ConnectionSpan(
                connection=0,
                thread="MainThread",
                thread_role="main thread",
                task=f"task {i + 1}",
                checked_out=start + 0.001,
                ended=start + 0.004,
                end=SpanEnd.RETURNED,
            )
        )
    return Timeline(
        origin=1_700_000_000.0,
        duration=TASKS * (TASK_SECONDS + GAP),
        spans=tuple(spans),
        tasks=tasks(),
    )


def fixed_timeline() -> Timeline:
    spans = tuple(
        ConnectionSpan(
            connection=1,
            thread="ThreadPoolExecutor-0_0",
            thread_role=EXECUTOR,
            task=f"task {i + 1}",
            checked_out=task_window(i)[0] + 0.005,
            ended=task_window(i)[1] - 0.005,
            end=SpanEnd.RETURNED,
        )
        for i in range(TASKS)
    )
    return Timeline(
        origin=1_700_000_001.0, duration=TASKS * (TASK_SECONDS + GAP), spans=spans, tasks=tasks()
    )


def site(file: str = SITE_FILE) -> LeakSite:
    return LeakSite(
        kind=LeakKind.LOST,
        file=file,
        line=42,
        function="refresh_prices",
        thread=EXECUTOR,
        count=TASKS,
        reason="thread ended 2 ms after its task; connection collected while out",
        tasks=tuple(f"task {i + 1}" for i in range(TASKS)),
        thread_names=tuple(f"ThreadPoolExecutor-{i}_0" for i in range(TASKS)),
        excerpt=(
            SourceLine(40, "async def refresh_prices():"),
            SourceLine(41, "    async with ThreadSensitiveContext():"),
            SourceLine(42, "        await sync_to_async(Price.objects.update)(stale=True)"),
            SourceLine(43, "    # <b>not</b> closed & never returned"),
        ),
    )


def subject(
    name: str, verdict: Verdict, timeline: Timeline, fix: Fix | None = None
) -> SubjectResult:
    leaky = verdict is Verdict.LEAK
    rows = tuple(
        census(
            i,
            lost=i + 1 if leaky else 0,
            size=i + 1 if leaky else 1,
            available=0 if leaky else 1,
            ok=i != 2,
        )
        for i in range(TASKS)
    )
    return SubjectResult(
        subject=name,
        kind="wrapper",
        verdict=verdict,
        summary=f"{name}: {TASKS} tasks lost {TASKS} slots" if leaky else f"{name}: no slot lost",
        lost_slots=TASKS if leaky else 0,
        lost_per_task=1.0 if leaky else 0.0,
        held_connections=0,
        tasks_until_exhaustion=TASKS if leaky else None,
        symptoms=("PoolTimeout: couldn't get a connection after 5.00 sec (1 task)",)
        if leaky
        else (),
        stop=StopReason.DONE,
        stop_detail=None,
        evidence=Evidence(pooled=True, celery_task=True, census=rows),
        leak_sites=(site(),) if leaky else (),
        timeline=timeline,
        fix=fix,
    )


DATABASE = DatabaseInfo(
    alias="default",
    vendor="postgresql",
    dsn="postgresql://app:***@localhost:5432/app",
    pool={"max_size": 4, "timeout": 5.0},
    conn_max_age=0,
    server_version="16.4",
    max_connections=100,
    source="settings",
)


def build_check_report() -> Report:
    proven = Fix(
        subject="async_to_sync",
        code="async_to_sync(refresh)()\n",
        applied_to="run_refresh",
        measured=Verdict.CLEAN,
        diff=DIFF,
    )
    leaky = subject("run_refresh", Verdict.LEAK, leaky_timeline(), fix=proven)
    fixed = subject("run_refresh (fixed)", Verdict.CLEAN, fixed_timeline())
    return Report(
        verdict=Verdict.LEAK,
        headline="run_refresh leaks a pool slot per task.",
        environment={"django": "6.1", "python": "3.12.7"},
        findings=(
            Finding(
                code="PD101",
                severity=Severity.ERROR,
                message="run_refresh runs async ORM code in a thread that never closes it.",
                fix="Use async_to_sync.",
                subject="run_refresh",
            ),
        ),
        seconds=1.5,
        database=DATABASE,
        results=(leaky, fixed),
        fix=proven,
    )


def worker_timeline(pid_offset: float, *, inherited: bool) -> Timeline:
    spans = [
        ConnectionSpan(
            connection=1,
            thread="MainThread",
            thread_role="main thread",
            task="task 1",
            checked_out=0.001,
            ended=0.03,
            end=SpanEnd.RETURNED,
            inherited=inherited,
        ),
        ConnectionSpan(
            connection=2,
            thread="MainThread",
            thread_role="main thread",
            task="task 2",
            checked_out=0.05,
            ended=None,
            end=SpanEnd.HELD,
        ),
    ]
    return Timeline(
        origin=1_700_000_000.0 + pid_offset, duration=0.1, spans=tuple(spans), tasks=tasks()[:2]
    )


def build_simulate_report() -> SimulateReport:
    shared = ProcessResult(
        pid=301,
        verdict=Verdict.UNSAFE,
        summary="used its parent's socket",
        tasks=2,
        crossed_replies=2,
        inherited_connections=1,
        census=subject("x", Verdict.LEAK, leaky_timeline()).census[:2],
        leak_sites=(site(),),
        timeline=worker_timeline(0.0, inherited=True),
    )
    own = ProcessResult(
        pid=302,
        verdict=Verdict.PINNED,
        summary="holds one connection",
        tasks=2,
        held_connections=1,
        timeline=worker_timeline(0.05, inherited=False),
    )
    fleet = FleetResult(
        subject="run_refresh",
        kind="wrapper",
        verdict=Verdict.UNSAFE,
        summary="replies crossed between worker processes",
        workers=(shared, own),
        tasks=4,
        crossed_replies=2,
        shared_backends={4242: (301, 302)},
    )
    return SimulateReport(
        verdict=Verdict.UNSAFE,
        headline="UNSAFE: replies crossed.",
        environment={},
        findings=(),
        seconds=3.0,
        database=DATABASE,
        celery={"version": "5.5.3", "pool": "prefork", "concurrency": 2, "broker": "embedded"},
        results=(fleet,),
    )


def build_inspect_report() -> InspectReport:
    process = ProcessResult(
        pid=401,
        verdict=Verdict.PINNED,
        summary="one connection held",
        tasks=12,
        held_connections=1,
        leak_sites=(site(),),
        pinned=(
            PinnedConnection(
                thread="Thread-3",
                thread_role="worker thread",
                held_seconds=4.0,
                transaction="idle",
                backend_pid=77,
            ),
        ),
    )
    node = NodeResult(
        node="celery@web1",
        status=NodeStatus.ANSWERED,
        verdict=Verdict.PINNED,
        summary="1 connection held",
        pid=400,
        pool="threads",
        concurrency=4,
        alias="default",
        tracking=True,
        pooldoctor="1.0",
        processes=(process,),
    )
    return InspectReport(
        verdict=Verdict.PINNED,
        headline="celery@web1 holds a connection.",
        environment={},
        findings=(),
        seconds=0.5,
        broker="redis://***@localhost/0",
        timeout=2.0,
        destination=(),
        nodes=(node,),
        server=ServerResult(
            dsn="postgresql://app:***@localhost/app", available=True, detail=None, sessions=3
        ),
    )


# -- reading the page ---------------------------------------------------------------------


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Element] = []
        self.text = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            found += child.iter()
        return found

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and (cls is None or set(cls.split()) <= e.classes)
        ]

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


VOID = {"meta", "br", "link", "img", "input", "hr"}


class Tree(HTMLParser):
    """The page as a tree, strictly: an end tag that closes anything but the open element
    fails the test (the page must be well formed for every browser, and for the SVG parser)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(page: str) -> Element:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert [e.tag for e in tree.stack] == ["#document"], "unclosed elements"
    return tree.root


def svgs(page: str) -> list[ET.Element]:
    """Each inline SVG, parsed as XML: it must be well formed on its own."""
    found = re.findall(r"<svg class=\"chart.*?</svg>", page, flags=re.S)
    return [ET.fromstring(s) for s in found]


@pytest.fixture(scope="module")
def check_page() -> str:
    return html_reporter.render(build_check_report())


def section(root: Element, subject_name: str) -> Element:
    (found,) = [e for e in root.find("section") if e.attrs.get("data-subject") == subject_name]
    return found


# -- check --------------------------------------------------------------------------------


def leaky_page(timeline: Timeline) -> str:
    """The sample report's page with its leaky subject given ``timeline``."""
    report = build_check_report()
    leaky = dataclasses.replace(report.results[0], timeline=timeline)
    return html_reporter.render(dataclasses.replace(report, results=(leaky,)))


def test_a_complete_document(check_page: str) -> None:
    root = parse(check_page)
    assert check_page.startswith("<!DOCTYPE html>")
    (head,) = root.find("head")
    (title,) = head.find("title")
    assert title.text == "pooldoctor check: leak"
    assert "@media print" in check_page
    assert "<script" not in check_page
    assert len(svgs(check_page)) == 4  # a timeline and an occupancy chart per subject


def test_the_leaky_subject_has_four_lost_bars_ending_where_their_threads_ended(
    check_page: str,
) -> None:
    leaky = section(parse(check_page), "run_refresh")
    lost = leaky.find("rect", "span lost")
    assert len(lost) == TASKS
    assert {e.attrs["data-thread"] for e in lost} == {
        f"ThreadPoolExecutor-{i}_0" for i in range(TASKS)
    }
    marks = leaky.find("g", "lost-mark")
    assert len(marks) == TASKS
    ends = sorted(float(e.attrs["x"]) + float(e.attrs["width"]) for e in lost)
    assert ends == pytest.approx(sorted(float(m.attrs["data-x"]) for m in marks), abs=0.11)
    # Each bar ends at its thread's end, on the axis the ticks are drawn on.
    scale = (html_reporter.PLOT_X1 - html_reporter.PLOT_X0) / (TASKS * (TASK_SECONDS + GAP))
    expected = [
        html_reporter.PLOT_X0 + (task_window(i)[1] + THREAD_END_DELAY) * scale for i in range(TASKS)
    ]
    assert ends == pytest.approx(expected, abs=0.2)
    labels = [e.all_text() for e in leaky.find("g", "lost-label")]
    assert labels == [f"lost — thread ended 2 ms after task {i + 1}" for i in range(TASKS)]
    for bar in lost:
        (hover,) = bar.find("title")
        assert "lost at" in hover.text and "connection #" in hover.text
    assert len(leaky.find("rect", "span returned")) == TASKS  # the main thread's


def test_the_fixed_subject_loses_nothing(check_page: str) -> None:
    fixed = section(parse(check_page), "run_refresh (fixed)")
    assert fixed.find("rect", "span lost") == []
    assert fixed.find(cls="lost-label") == []
    assert len(fixed.find("rect", "span returned")) == TASKS
    (lane,) = fixed.find("g", "lane")
    assert lane.attrs["data-role"] == EXECUTOR


def test_lanes_are_threads_with_their_role(check_page: str) -> None:
    leaky = section(parse(check_page), "run_refresh")
    lanes = {e.attrs["data-thread"]: e.attrs["data-role"] for e in leaky.find("g", "lane")}
    assert lanes == {
        "MainThread": "main thread",
        **{f"ThreadPoolExecutor-{i}_0": EXECUTOR for i in range(TASKS)},
    }
    text = " ".join(e.all_text() for e in leaky.find("g", "lane"))
    assert EXECUTOR in text and "ThreadPoolExecutor-3_0" in text


def test_task_boundaries_with_outcomes(check_page: str) -> None:
    leaky = section(parse(check_page), "run_refresh")
    strip = leaky.find("rect", "task")
    assert [e.attrs["data-task"] for e in strip] == [f"task {i + 1}" for i in range(TASKS)]
    assert [("failed" in e.classes) for e in strip] == [False, False, True, False]
    assert len(leaky.find("line", "task-boundary")) == TASKS


def test_the_time_axis_has_ticks_in_milliseconds(check_page: str) -> None:
    timeline = svgs(check_page)[0]
    ticks = [t.text for t in timeline.iter("text") if t.text]
    assert "0 ms" in ticks and "100 ms" in ticks


def test_occupancy_has_one_step_per_task_and_marks_exhaustion(check_page: str) -> None:
    root = parse(check_page)
    leaky, fixed = section(root, "run_refresh"), section(root, "run_refresh (fixed)")
    steps = leaky.find("rect", "step")
    assert [s.attrs["data-task"] for s in steps] == [str(i) for i in range(TASKS)]
    assert [s.attrs["data-lost"] for s in steps] == ["1", "2", "3", "4"]
    assert [s.attrs["data-checked-out"] for s in steps] == ["1", "2", "3", "4"]
    # max_size 4: the pool has a free slot until the fourth slot is lost
    assert ["exhausted" in s.classes for s in steps] == [False, False, False, True]
    assert "exhausted" in " ".join(e.all_text() for e in leaky.find("text", "exhausted-label"))
    series = {e.attrs["class"] for e in leaky.find("path", "series")}
    assert series == {"series size", "series available", "series checked-out", "series lost"}
    fixed_steps = fixed.find("rect", "step")
    assert len(fixed_steps) == TASKS and not any("exhausted" in s.classes for s in fixed_steps)


def test_leak_site_excerpt_highlights_the_site_line(check_page: str) -> None:
    leaky = section(parse(check_page), "run_refresh")
    (block,) = leaky.find("div", "leak-site")
    lines = block.find("span", "line")
    assert [e.attrs["data-line"] for e in lines] == ["40", "41", "42", "43"]
    highlighted = [e.attrs["data-line"] for e in lines if "site" in e.classes]
    assert highlighted == ["42"]
    assert "<b>not</b> closed & never returned" in lines[3].all_text()
    assert "shop/tasks.py:42 in refresh_prices()" in block.all_text()


def test_symptoms_findings_and_the_proven_fix(check_page: str) -> None:
    root = parse(check_page)
    leaky = section(root, "run_refresh")
    assert "PoolTimeout" in " ".join(e.all_text() for e in leaky.find("ul", "symptoms"))
    (fix,) = leaky.find("div", "fix")
    assert fix.attrs["data-proven"] == "true"
    (diff,) = fix.find("pre", "diff")
    assert [e.attrs["class"] for e in diff.find("span")] == ["file", "file", "hunk", "del", "add"]
    (finding,) = root.find("li", "finding")
    assert finding.attrs["data-code"] == "PD101"
    (closing,) = root.find("section", "closing")
    assert closing.attrs["data-proven"] == "true"
    assert "measured clean here" in closing.all_text()


def test_every_string_from_the_report_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    report = build_check_report()
    leaky = dataclasses.replace(
        report.results[0], subject=f"run {evil}", leak_sites=(site(f"shop/{evil}.py"),)
    )
    page = html_reporter.render(dataclasses.replace(report, results=(leaky,), headline=evil))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parse(page)
    svgs(page)


def test_nothing_is_loaded_from_anywhere(check_page: str) -> None:
    root = parse(check_page)
    for element in root.iter():
        for name in ("src", "href", "xlink:href", "action", "srcset"):
            value = element.attrs.get(name, "")
            assert value == "" or value.startswith("#"), (element.tag, name, value)
    assert not re.search(r"https?://", check_page)
    assert "@import" not in check_page and "url(" not in check_page.replace("url(#", "")
    assert root.find("link") == [] and root.find("script") == []


def test_a_big_timeline_stays_bounded() -> None:
    many = tuple(
        ConnectionSpan(
            connection=i,
            thread=f"Thread-{i % 300}",
            thread_role="worker thread",
            task=None,
            checked_out=i * 0.001,
            ended=i * 0.001 + 0.0005,
            end=SpanEnd.LOST if i == 7 else SpanEnd.RETURNED,
        )
        for i in range(10_000)
    )
    timeline = Timeline(origin=0.0, duration=10.0, spans=many, dropped_spans=5000)
    page = leaky_page(timeline)
    root = parse(page)
    assert len(root.find("g", "lane")) == html_reporter.MAX_LANES
    assert len(root.find("rect", "span")) <= html_reporter.MAX_SPANS
    assert len(root.find("rect", "span lost")) == 1  # kept whatever is left out
    notes = " ".join(e.all_text() for e in root.find("p", "note"))
    assert "5000 older checkouts were not recorded" in notes
    assert "more threads" in notes and "returned checkouts not drawn" in notes
    assert len(page) < 3_000_000


def test_a_saved_report_renders_the_same() -> None:
    report = build_check_report()
    again = from_dict(Report, to_dict(report))
    assert html_reporter.render(again) == html_reporter.render(report)


# -- simulate and inspect -------------------------------------------------------------------


def test_simulate_one_row_per_worker_process_on_one_clock() -> None:
    page = html_reporter.render(build_simulate_report())
    root = parse(page)
    (timeline,) = [e for e in root.find("svg", "timeline")]
    rows = timeline.find("g", "process-row")
    assert len(rows) == 2
    headers = [" ".join(e.all_text() for e in r.find("g", "process-header")) for r in rows]
    assert headers[0].startswith("pid 301: unsafe, 1 inherited in use")
    assert headers[1].startswith("pid 302: pinned")
    # crossed replies, shown on the process that got them
    (crossed,) = rows[0].find("g", "crossed")
    assert crossed.attrs["data-count"] == "2" and "2 crossed replies" in crossed.all_text()
    assert rows[1].find("g", "crossed") == []
    # the inherited checkout is marked, the other process's is not
    inherited = timeline.find("rect", "inherited")
    assert len(inherited) == 1 and "inherited" in inherited[0].find("title")[0].text
    assert len(rows[0].find("g", "inherited-tag")) == 1
    # process 302 started 50 ms after 301: its first bar starts further right
    first = [float(r.find("rect", "span")[0].attrs["x"]) for r in rows]
    assert first[1] > first[0] + 100
    assert len(timeline.find("rect", "span held")) == 2
    # the shared backend and the worker table
    assert "Backend 4242 answered worker pids 301, 302." in page
    assert [e.attrs["data-pid"] for e in root.find("tr", "process")] == ["301", "302"]
    svgs(page)


def test_inspect_renders_without_timelines() -> None:
    page = html_reporter.render(build_inspect_report())
    root = parse(page)
    assert root.find("svg", "timeline") == [] and root.find("svg", "occupancy") == []
    (node,) = root.find("section", "node")
    assert node.attrs["data-node"] == "celery@web1"
    assert "No timeline was recorded" in page
    assert "held by Thread-3 (worker thread) for 4 s" in page
    (block,) = node.find("div", "leak-site")
    assert [e.attrs["data-line"] for e in block.find("span", "site")] == ["42"]
    assert "3 sessions on postgresql://app:***@localhost/app" in page


@pytest.mark.parametrize("build", [build_check_report, build_simulate_report, build_inspect_report])
def test_every_report_is_well_formed(
    build: Callable[[], Report | SimulateReport | InspectReport],
) -> None:
    page = html_reporter.render(build())
    parse(page)
    for svg in svgs(page):
        assert svg.get("viewBox")


def test_checkouts_still_out_at_the_end_run_to_the_end() -> None:
    def out(n: int, end: SpanEnd) -> ConnectionSpan:
        return ConnectionSpan(
            connection=n,
            thread=f"Thread-{n}",
            thread_role="worker thread",
            task=None,
            checked_out=0.1,
            ended=None,
            end=end,
        )

    spans = (out(1, SpanEnd.LOST), out(2, SpanEnd.HELD), out(3, SpanEnd.OPEN))
    page = leaky_page(Timeline(origin=0.0, duration=1.0, spans=spans))
    root = section(parse(page), "run_refresh")
    bars = {e.attrs["data-connection"]: e for e in root.find("rect", "span")}
    assert bars["1"].classes == {"span", "lost", "open-ended"}
    assert bars["2"].classes == {"span", "held"} and bars["3"].classes == {"span", "open"}
    for bar in bars.values():
        end = float(bar.attrs["x"]) + float(bar.attrs["width"])
        assert end == pytest.approx(html_reporter.PLOT_X1, abs=0.1)
    assert root.find("g", "lost-mark") == [] and len(root.find("path", "lost-open")) == 1
    assert [e.all_text() for e in root.find("g", "lost-label")] == ["lost — moment unknown"]
    assert "still out at the end (held)" in bars["2"].find("title")[0].text


def test_lost_labels_in_one_lane_do_not_overlap() -> None:
    """Connections dropped one after another by one live thread: a label for the first, the
    hover text for the ones too close to label."""
    spans = tuple(
        ConnectionSpan(
            connection=n,
            thread="MainThread",
            thread_role="main thread",
            task=None,
            checked_out=n * 0.01,
            ended=n * 0.01 + 0.001,
            end=SpanEnd.LOST,
        )
        for n in range(5)
    )
    page = leaky_page(Timeline(origin=0.0, duration=1.0, spans=spans))
    root = section(parse(page), "run_refresh")
    assert len(root.find("rect", "span lost")) == 5 and len(root.find("g", "lost-mark")) == 5
    assert [e.all_text() for e in root.find("g", "lost-label")] == ["lost — connection dropped"]
    # bars too short to hold the ring: it sits past their end, leaving the red visible
    bar = root.find("rect", "span lost")[0]
    (ring,) = root.find("g", "lost-mark")[0].find("circle")
    assert float(ring.attrs["cx"]) > float(bar.attrs["x"]) + float(bar.attrs["width"])


def test_a_thread_that_ends_inside_its_task_is_labelled_so() -> None:
    """asgiref's per-task ThreadSensitiveContext: its executor thread ends as the context exits,
    before the task returns."""
    timeline = leaky_timeline()
    spans = tuple(
        dataclasses.replace(s, ended=s.checked_out + 0.01, thread_ended=s.checked_out + 0.01)
        if s.end is SpanEnd.LOST
        else s
        for s in timeline.spans
    )
    root = section(parse(leaky_page(dataclasses.replace(timeline, spans=spans))), "run_refresh")
    labels = [e.all_text() for e in root.find("g", "lost-label")]
    assert labels == [f"lost — thread ended within task {i + 1}" for i in range(TASKS)]


def test_the_axis_starts_at_the_first_checkout_or_task() -> None:
    """A subject's set-up before its first task is not drawn as blank space."""
    late = dataclasses.replace(
        leaky_timeline(),
        spans=tuple(
            dataclasses.replace(
                s,
                checked_out=s.checked_out + 5.0,
                ended=None if s.ended is None else s.ended + 5.0,
                thread_ended=None if s.thread_ended is None else s.thread_ended + 5.0,
            )
            for s in leaky_timeline().spans
        ),
        tasks=tuple(
            dataclasses.replace(
                t, started=t.started + 5.0, ended=None if t.ended is None else t.ended + 5.0
            )
            for t in tasks()
        ),
        duration=5.0 + TASKS * (TASK_SECONDS + GAP),
    )
    root = section(parse(leaky_page(late)), "run_refresh")
    (first,) = [e for e in root.find("rect", "task") if e.attrs["data-task"] == "task 1"]
    assert float(first.attrs["x"]) == pytest.approx(html_reporter.PLOT_X0, abs=0.1)
    ticks = [e.all_text() for e in root.find("g", "axis")[0].find("text")]
    assert ticks[:2] == ["5.00 s", "5.05 s"], ticks
