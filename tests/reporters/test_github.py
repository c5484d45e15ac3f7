from __future__ import annotations

import dataclasses
from typing import Any

import click
import pytest

from pooldoctor.cli import cli
from pooldoctor.core.model import Fix, LeakKind, LeakSite, Report, SimulateReport, Verdict
from pooldoctor.reporters import Format, github, render
from pooldoctor.reporters.scan import ScanFormat
from pooldoctor.reporters.scan import render as render_scan
from pooldoctor.scan.model import ScanResult

from .conftest import LOST_SITE, PINNED_SITE

HEADLINE = (
    "::notice title=pooldoctor check%3A leak::run_async_task leaks a pool slot per task: "
    "Celery workers will exhaust the pool."
)
# The headline speaks for the project: an error when its verdict (here leak) fails the run.
HEADLINE_FAILS = HEADLINE.replace("::notice", "::error", 1)
LEAK_HEAD = (
    "run_async_task (wrapper): leak: 3 tasks lost 3 pool slots (1.00 per task): the pool is "
    "exhausted after 4 tasks.%0Asymptom: PoolTimeout: couldn't get a connection after 5.00 sec "
    "(1 task)"
)
LOST_LINES = (
    "LOST    shop/tasks.py:42 in refresh_prices() via ThreadSensitiveContext executor%0A"
    "        (thread ended 3 ms after its task; connection garbage-collected while checked out)%0A"
    "        x3 connections, from task 1 (ok), task 2 (raise-after-query), task 3 (ok)%0A"
    "        stack: [django, asgiref] < refresh_prices (shop/tasks.py:42) < [asyncio] "
    "< run (shop/celery.py:9)"
)
FINDING = (
    "::error title=PD101::run_async_task runs async ORM code in a thread that never closes it. "
    "Fix: Call close_old_connections() in the thread, or use async_to_sync."
)
PINNED_MODE = (
    "::notice title=thread_sensitive_context (built-in mode)%3A pinned::thread_sensitive_context "
    "(mode): pinned: 1 connection stays checked out by a live executor thread.%0A"
    "(built-in mode: informs, does not gate)"
)


def lines(report: Report, fail_on: str = "leak") -> list[str]:
    text = github.render(report, fail_on=fail_on)
    assert text.endswith("\n")
    return text.splitlines()


def with_wrapper(
    report: Report, *, leak_sites: tuple[LeakSite, ...] | None = None, **changes: Any
) -> Report:
    """The sample report with its wrapper's result, and its leak sites, changed."""
    wrapper = report.results[0]
    sites = wrapper.leak_sites if leak_sites is None else leak_sites
    result = dataclasses.replace(wrapper, leak_sites=sites, **changes)
    return dataclasses.replace(report, results=(result, *report.results[1:]))


@pytest.mark.parametrize("fail_on", ["leak", "pinned"])
def test_a_lost_site_is_an_error_at_its_line(sample_report: Report, fail_on: str) -> None:
    assert lines(sample_report, fail_on) == [
        HEADLINE_FAILS,
        "::error file=shop/tasks.py,line=42,title=run_async_task%3A 3 connections lost::"
        f"{LEAK_HEAD}%0A{LOST_LINES}",
        FINDING,
        PINNED_MODE,
    ]


def test_below_fail_on_a_site_is_a_warning(sample_report: Report) -> None:
    assert lines(sample_report, "never")[1].startswith(
        "::warning file=shop/tasks.py,line=42,title=run_async_task%3A 3 connections lost::"
    )


@pytest.mark.parametrize(("fail_on", "level"), [("leak", "warning"), ("pinned", "error")])
def test_a_pinned_site_is_an_error_only_with_fail_on_pinned(
    sample_report: Report, fail_on: str, level: str
) -> None:
    site = dataclasses.replace(
        LOST_SITE, kind=LeakKind.PINNED, count=1, reason="held between tasks by a live thread"
    )
    report = with_wrapper(
        sample_report, verdict=Verdict.PINNED, summary="1 connection stays checked out.",
        symptoms=(), leak_sites=(site,),
    )  # fmt: skip

    assert lines(report, fail_on)[1] == (
        f"::{level} file=shop/tasks.py,line=42,title=run_async_task%3A 1 connection pinned::"
        "run_async_task (wrapper): pinned: 1 connection stays checked out.%0A"
        "PINNED  shop/tasks.py:42 in refresh_prices() via ThreadSensitiveContext executor%0A"
        "        (held between tasks by a live thread)%0A"
        "        x1 connection, from task 1 (ok), task 2 (raise-after-query), task 3 (ok)%0A"
        "        stack: [django, asgiref] < refresh_prices (shop/tasks.py:42) < [asyncio] "
        "< run (shop/celery.py:9)"
    )


def test_one_annotation_per_site(sample_report: Report) -> None:
    report = with_wrapper(sample_report, leak_sites=(LOST_SITE, PINNED_SITE))

    annotations = lines(report)[1:3]

    assert annotations[0].startswith("::error file=shop/tasks.py,line=42,title=")
    # No frame of the project's code: the annotation has no file.
    assert annotations[1].startswith(
        "::warning title=run_async_task%3A 1 connection pinned::run_async_task (wrapper): leak: "
    )
    no_frame = "%0APINNED  (no frame of the project's own code on the stack) via process-wide"
    assert no_frame in annotations[1]


@pytest.mark.parametrize(
    ("verdict", "fail_on", "level"),
    [
        (Verdict.LEAK, "leak", "error"),
        (Verdict.LEAK, "never", "warning"),
        (Verdict.PINNED, "leak", "warning"),
        (Verdict.PINNED, "pinned", "error"),
        (Verdict.ERROR, "leak", "error"),
        (Verdict.ERROR, "never", "warning"),
    ],
)
def test_a_bad_wrapper_without_sites_gets_one_annotation_without_a_file(
    sample_report: Report, verdict: Verdict, fail_on: str, level: str
) -> None:
    report = with_wrapper(sample_report, verdict=verdict, leak_sites=())

    assert lines(report, fail_on)[1] == (
        f"::{level} title=run_async_task%3A {verdict.value}::"
        + LEAK_HEAD.replace(": leak: ", f": {verdict.value}: ", 1)
    )


def test_clean_wrappers_and_modes_are_not_annotated(sample_report: Report) -> None:
    report = with_wrapper(sample_report, verdict=Verdict.CLEAN, leak_sites=())

    assert lines(report) == [HEADLINE_FAILS, FINDING, PINNED_MODE]


def test_a_mode_that_could_not_be_measured_is_a_warning(sample_report: Report) -> None:
    mode = dataclasses.replace(sample_report.results[2], verdict=Verdict.ERROR, summary="hung")
    report = dataclasses.replace(sample_report, results=(*sample_report.results[:2], mode))

    assert lines(report)[-1] == (
        "::warning title=thread_sensitive_context (built-in mode)%3A error::"
        "thread_sensitive_context (mode): error: hung%0A(built-in mode: informs, does not gate)"
    )


def test_messages_and_properties_are_escaped(sample_report: Report) -> None:
    site = dataclasses.replace(
        LOST_SITE, file="shop/a,b:c.py", reason="100% lost\r\nthen gone", stack=()
    )
    report = with_wrapper(sample_report, symptoms=(), leak_sites=(site,))
    wrapper = dataclasses.replace(report.results[0], summary="lost: 3, 100%")

    report = dataclasses.replace(
        report, results=(dataclasses.replace(wrapper, subject="app.tasks:run(a, b)"),), findings=()
    )

    assert lines(report)[1] == (
        "::error file=shop/a%2Cb%3Ac.py,line=42,title=app.tasks%3Arun(a%2C b)%3A 3 connections "
        "lost::app.tasks:run(a, b) (wrapper): leak: lost: 3, 100%25%0A"
        "LOST    shop/a,b:c.py:42 in refresh_prices() via ThreadSensitiveContext executor%0A"
        "        (100%25 lost%0D%0Athen gone)%0A"
        "        x3 connections, from task 1 (ok), task 2 (raise-after-query), task 3 (ok)"
    )


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("a%b", "a%25b", "a%25b"),
        ("one\r\ntwo", "one%0D%0Atwo", "one%0D%0Atwo"),
        ("mod:attr, x", "mod:attr, x", "mod%3Aattr%2C x"),
        ("%0A", "%250A", "%250A"),
    ],
)
def test_escaping(text: str, data: str, prop: str) -> None:
    assert github.escape_data(text) == data
    assert github.escape_property(text) == prop


def test_annotation_properties_in_order() -> None:
    assert github.annotation("error", "m", title="T", file="f.py", line=3, col=4) == (
        "::error file=f.py,line=3,col=4,title=T::m"
    )
    assert github.annotation("notice", "m") == "::notice::m"


@pytest.mark.parametrize(
    ("file", "where"),
    [
        ("shop/tasks.py", ("shop/tasks.py", 42)),
        (None, None),
        # outside the project root: shown absolute
        ("/srv/lib/shop/tasks.py", None),
        ("../lib/shop/tasks.py", None),
        # pooldoctor's probe task, standing in for the project's code under a built-in mode
        ("pooldoctor/core/probes/task.py", None),
        # a virtualenv inside the project's directory
        (".venv/lib/python3.12/site-packages/shop/tasks.py", None),
        ("<string>", None),
    ],
)
def test_only_a_site_in_the_project_s_tree_is_placed_on_a_file(
    file: str | None, where: tuple[str, int] | None
) -> None:
    site = dataclasses.replace(LOST_SITE, file=file)

    assert github.annotated_line(site) == where


def test_a_site_outside_the_tree_keeps_its_location_in_the_message(sample_report: Report) -> None:
    site = dataclasses.replace(LOST_SITE, file="/srv/lib/shop/tasks.py", stack=())
    report = with_wrapper(sample_report, leak_sites=(site,))

    annotation = lines(report)[1]

    assert annotation.startswith(
        f"::error title=run_async_task%3A 3 connections lost::{LEAK_HEAD}%0A"
        "LOST    /srv/lib/shop/tasks.py:42 in refresh_prices() via ThreadSensitiveContext"
    )
    # and simulate's per-worker annotation, built the same way
    assert github.site_annotation("run_async_task (worker pid 7)", [], site, "leak").startswith(
        "::error title=run_async_task (worker pid 7)%3A 3 connections lost::LOST    /srv/lib/"
    )


def test_unknown_fail_on_is_rejected(sample_report: Report) -> None:
    with pytest.raises(ValueError, match="fail_on"):
        github.render(sample_report, fail_on="warning")


def test_through_the_format_enum(sample_report: Report) -> None:
    assert render(sample_report, Format.GITHUB, fail_on="pinned") == github.render(
        sample_report, fail_on="pinned"
    )


def test_simulation(sample_simulation: SimulateReport) -> None:
    wrapper = "run_async_task (wrapper): unsafe: run_async_task measured unsafe on 2 workers"

    assert render(sample_simulation, "github", fail_on="leak").splitlines() == [
        "::error title=pooldoctor simulate%3A unsafe::UNSAFE: run_async_task: replies crossed "
        "between worker processes.",
        f"::error title=run_async_task%3A unsafe::{wrapper}%0A"
        "worker 301: unsafe: worker 301 measured unsafe%0A"
        "worker 302: leak: worker 302 measured leak",
        "::error file=shop/tasks.py,line=42,title=run_async_task (worker pid 301)%3A 3 "
        f"connections lost::{wrapper}%0A{LOST_LINES}",
        "::error title=PD403::Backend 4242 answered worker processes 301 and 302. "
        "Fix: Discard the inherited pool in worker_process_init.",
        "::notice title=thread_insensitive (built-in mode)%3A leak::thread_insensitive (mode): "
        "leak: thread_insensitive measured leak on 1 workers%0A"
        "worker 304: leak: worker 304 measured leak%0A(built-in mode: informs, does not gate)",
    ]


def test_simulation_never_fails_unsafe_is_still_reported(
    sample_simulation: SimulateReport,
) -> None:
    out = render(sample_simulation, "github", fail_on="never").splitlines()

    assert out[1].startswith("::warning title=run_async_task%3A unsafe::")
    assert out[2].startswith("::warning file=shop/tasks.py,line=42,")


def test_scan_findings_carry_file_line_and_column(sample_scan: ScanResult) -> None:
    assert render_scan(sample_scan, ScanFormat.GITHUB, []).splitlines() == [
        "::error file=shop/tasks.py,line=42,col=9,title=PD303::A per-task ThreadSensitiveContext, "
        "cleanup outside it: 1 slot/task. Fix: Close connections inside the context, in finally.",
        "::notice file=shop/settings.py,line=10,col=1,title=PD105::A pool without "
        'CONN_HEALTH_CHECKS. Fix: "CONN_HEALTH_CHECKS": True',
    ]


@pytest.mark.parametrize("command", ["check", "demo", "simulate", "scan", "report"])
def test_every_format_option_offers_github(command: str) -> None:
    [option] = [p for p in cli.commands[command].params if p.name == "fmt"]

    assert isinstance(option.type, click.Choice)
    assert "github" in option.type.choices
    if command != "scan":
        assert {f.value for f in Format} <= set(option.type.choices)


def test_the_project_s_own_task_is_annotated_like_a_wrapper(sample_report: Report) -> None:
    wrapper = sample_report.results[0]

    report = dataclasses.replace(
        sample_report,
        results=(
            dataclasses.replace(wrapper, subject="shop.tasks.refresh_prices", kind="task"),
            *sample_report.results[1:],
        ),
    )

    assert lines(report)[1].startswith(
        "::error file=shop/tasks.py,line=42,title=shop.tasks.refresh_prices%3A 3 connections lost"
        "::shop.tasks.refresh_prices (task): leak: "
    )


def test_a_proven_fix_is_a_notice_with_its_diff(sample_report: Report) -> None:
    # GIVEN the leaking wrapper's own source, patched and measured clean in the same run
    diff = "--- a/shop/tasks.py\n+++ b/shop/tasks.py\n@@ -1 +1 @@\n-old\n+new\n"
    proven = Fix("async-to-sync", "...", applied_to="run_async_task", measured=Verdict.CLEAN,
                 diff=diff)  # fmt: skip
    # THEN the diff follows the wrapper's annotations, as a notice (it does not gate)
    out = lines(with_wrapper(sample_report, fix=proven))
    notes = [line for line in out if "fix measured clean" in line]
    assert notes == [
        "::notice title=run_async_task%3A fix measured clean (async-to-sync)::Patched as below, "
        "run_async_task measured clean in this run.%0A--- a/shop/tasks.py%0A+++ b/shop/tasks.py"
        "%0A@@ -1 +1 @@%0A-old%0A+new%0A"
    ]
    # AND a patch that did not measure clean is not offered
    still = dataclasses.replace(proven, measured=Verdict.PINNED)
    out = lines(with_wrapper(sample_report, fix=still))
    assert not [line for line in out if "fix measured clean" in line]
