from __future__ import annotations

import dataclasses

import pytest

from pooldoctor.core.model import Report
from pooldoctor.reporters import Format, console, infer_format, render

from .conftest import DEAD_THREAD, FIX_CODE, HEADLINE, LEAK_SUMMARY


@pytest.fixture
def text(sample_report: Report) -> str:
    return console.render(sample_report, width=100, color=False)


def test_title_and_environment(text: str) -> None:
    lines = text.splitlines()

    assert lines[0] == (
        "pooldoctor check — postgresql://app:***@localhost:5432/app "
        "(alias default, pool: max_size 4 timeout 5s, CONN_MAX_AGE=0)"
    )
    assert lines[1] == (
        "Django 5.1.4 · psycopg 3.2.3 · psycopg_pool 3.2.4 · asgiref 3.8.1 · celery 5.4.0 · "
        "python 3.12.7"
    )


def test_no_pool_title(sample_report: Report) -> None:
    database = dataclasses.replace(sample_report.database, pool=None, conn_max_age=None)
    report = dataclasses.replace(sample_report, database=database)

    first = console.render(report, width=200).splitlines()[0]

    assert first.endswith("(alias default, no pool, CONN_MAX_AGE=None)")


def test_table_rows(text: str) -> None:
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line.split())  # the table comes first

    assert rows["run_async_task"] == [
        "run_async_task", "wrapper", "leak", "3", "1", "3", "1.00", "0", "4",
    ]  # fmt: skip
    assert rows["async_to_sync"][1:4] == ["mode", "clean", "3"]
    assert rows["async_to_sync"][-1] == "—"
    assert rows["thread_sensitive_context"][2] == "pinned"
    assert rows["thread_insensitive"][2] == "skipped"


def test_contains_everything_a_reader_needs(text: str) -> None:
    for word in ("run_async_task", "async_to_sync", "thread_sensitive_context"):
        assert word in text
    for verdict in ("leak", "clean", "pinned", "skipped"):
        assert verdict in text
    assert HEADLINE in text
    assert "PD101 error: run_async_task runs async ORM code" in text
    assert "  fix: Call close_old_connections()" in text
    assert "The pattern that measured clean here as async_to_sync, not run on your code:" in text
    for code_line in FIX_CODE.strip().splitlines():
        assert code_line in text


def test_evidence_for_leaking_and_pinned_only(text: str) -> None:
    assert LEAK_SUMMARY in text
    assert (
        f"thread {DEAD_THREAD} (owned executor, ended) — open, checked out, idle, held 0.4s, "
        "backend pid 4242"
    ) in text
    assert "pool: size 3, available 0, checked out 3, lost 3" in text
    assert "server: 3 backends (0 idle in transaction)" in text
    assert "symptom: PoolTimeout" in text
    assert "1 connection stays checked out by a live executor thread." in text
    # Clean and skipped subjects get a table row, not an evidence block.
    assert "3 tasks, no slot lost." not in text
    assert "Skipped: asgiref" not in text


def test_order_of_sections(text: str) -> None:
    positions = [
        text.index("pooldoctor check"),
        text.index("Subject"),
        text.index(LEAK_SUMMARY),
        text.index("PD101"),
        text.index(HEADLINE),
        text.index("The pattern that measured clean here as async_to_sync"),
    ]

    assert positions == sorted(positions)


def test_plain_without_color_and_ansi_with_color(sample_report: Report, text: str) -> None:
    assert "\x1b[" not in text
    assert "\x1b[" in console.render(sample_report, width=100, color=True)


def test_markup_in_user_strings_is_printed_verbatim(sample_report: Report) -> None:
    report = dataclasses.replace(sample_report, headline="[bold]not markup[/bold] :smile:")

    assert "[bold]not markup[/bold] :smile:" in console.render(report, width=100)


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders(sample_report: Report, fmt: Format) -> None:
    assert render(sample_report, fmt, width=100).strip()
    # With nothing to report, every format still says so (GitHub: the headline as a notice).
    nothing = dataclasses.replace(sample_report, results=(), findings=(), fix=None)
    assert render(nothing, fmt, width=100).strip()


@pytest.mark.parametrize(
    ("output", "given", "expected"),
    [
        (None, None, Format.TEXT),
        ("report.json", None, Format.JSON),
        ("out/REPORT.XML", None, Format.JUNIT),
        ("report.txt", None, Format.TEXT),
        ("report.xml", "json", Format.JSON),
        (None, "junit", Format.JUNIT),
        ("timeline.html", None, Format.HTML),
        ("report.HTM", None, Format.HTML),
        ("metrics.txt", "openmetrics", "openmetrics"),
    ],
)
def test_infer_format(output: str | None, given: str | None, expected: str) -> None:
    assert infer_format(output, given) == expected
