"""The issue's own test: the demo's HTML report, measured on the real PostgreSQL and rendered by
Debian's headless Chromium, shows the recipe's four lost connections as four bars that end
where their threads ended, and the fixed wrapper's run with every bar returning.

The page is cut down to the project's wrapper (the built-in modes leak too, and would add their
own red bars); the colours are the reporter's own, each used for one thing only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import pooldoctor
from PIL import Image

from pooldoctor.commands.report import load
from pooldoctor.core.model import Report, SpanEnd
from pooldoctor.reporters import html as html_reporter

from .test_html_browser import LOST, RETURNED, pixels, regions, shot

WRAPPER = "mysite.celeryapp:async_task()"


@pytest.fixture(scope="module")
def wrapper_only(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("demo") / "demo.json"
    proc = pooldoctor("demo", "--database", database_url, "-o", str(out), cwd=out.parent)
    assert out.exists(), proc.stderr
    report = load(str(out)).report
    assert isinstance(report, Report)
    (wrapper,) = [r for r in report.results if r.subject == WRAPPER]
    return dataclasses.replace(report, results=(wrapper,), findings=())


def test_the_recipes_four_lost_connections_are_four_bars(
    wrapper_only: Report, tmp_path: Path
) -> None:
    (result,) = wrapper_only.results
    assert result.timeline is not None and result.fix is not None
    without_fix = dataclasses.replace(result, fix=None)
    page = html_reporter.render(dataclasses.replace(wrapper_only, results=(without_fix,)))
    image = shot(tmp_path, page, "demo-leak")
    bars = regions(pixels(image, LOST))
    lost = [s for s in result.timeline.spans if s.end is SpanEnd.LOST]
    assert len(bars) == len(lost) == 4, bars
    # each ends where its thread did: later threads end further right, one lane each
    assert [b[2] for b in bars] == sorted(b[2] for b in bars)
    assert len({b[1] for b in bars}) == 4
    assert all(s.ended == s.thread_ended for s in lost)


def test_the_fixed_wrappers_bars_all_return(wrapper_only: Report, tmp_path: Path) -> None:
    (result,) = wrapper_only.results
    assert result.fix is not None and result.fix.proven and result.fix.timeline is not None
    # only the fix's run on the page: the leak's own timeline left out
    page = html_reporter.render(
        dataclasses.replace(wrapper_only, results=(dataclasses.replace(result, timeline=None),))
    )
    assert 'id="fix-timeline-0"' in page
    image: Image.Image = shot(tmp_path, page, "demo-fix")
    assert regions(pixels(image, LOST)) == []
    green = [b for b in regions(pixels(image, RETURNED)) if b[3] - b[1] + 1 >= 8]
    # at least one green bar per checkout the proof run made (the legend adds one swatch)
    assert len(green) >= len(result.fix.timeline.spans)
