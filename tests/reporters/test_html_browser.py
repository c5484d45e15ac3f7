"""The HTML report as a person sees it: Debian's headless Chromium renders the page, Pillow reads
the screenshot.

The report's colours are exact and each belongs to one thing (lost bars, their label pills), so
what is on screen can be counted: the leaky subject's four lost connections are four separate red
bars, each with its label under its end and a mark at it; the fixed subject adds no red.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import browser
import pytest
from browser import print_to_pdf, screenshot
from PIL import Image

from pooldoctor.reporters import html as html_reporter

from .test_html import TASKS, build_check_report, build_simulate_report

HEIGHT = 2600
RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # left, top, right, bottom (inclusive)


def rgb(color: str) -> RGB:
    value = int(color.lstrip("#"), 16)
    return (value >> 16 & 255, value >> 8 & 255, value & 255)


LOST = rgb(html_reporter.LOST_COLOR)
RETURNED = rgb(html_reporter.RETURNED_COLOR)
PILL = rgb(html_reporter.LOST_LABEL_COLOR)
INHERITED = rgb(html_reporter.INHERITED_COLOR)


def shot(tmp_path: Path, page: str, name: str) -> Image.Image:
    html = tmp_path / f"{name}.html"
    html.write_text(page, encoding="utf-8")
    png = screenshot(html, tmp_path / f"{name}.png", height=HEIGHT)
    with Image.open(png) as image:
        return image.convert("RGB")


def pixels(image: Image.Image, color: RGB) -> set[tuple[int, int]]:
    """Where ``image`` (RGB) has exactly ``color``."""
    data, target, width = image.tobytes(), bytes(color), image.width
    found = set()
    at = data.find(target)
    while at != -1:
        if at % 3 == 0:
            found.add((at // 3 % width, at // 3 // width))
        at = data.find(target, at + 1)
    return found


def regions(points: set[tuple[int, int]]) -> list[Box]:
    """Bounding boxes of the 4-connected regions of ``points``, top to bottom."""
    left = set(points)
    boxes = []
    while left:
        stack = [left.pop()]
        xs, ys = [], []
        while stack:
            x, y = stack.pop()
            xs.append(x)
            ys.append(y)
            for near in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if near in left:
                    left.remove(near)
                    stack.append(near)
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def inside(image: Image.Image, box: Box) -> Iterator[RGB]:
    left, top, right, bottom = box
    for y in range(max(top, 0), min(bottom, image.height - 1) + 1):
        for x in range(max(left, 0), min(right, image.width - 1) + 1):
            yield cast(RGB, image.getpixel((x, y)))


@pytest.fixture(scope="module")
def check_shot(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    page = html_reporter.render(build_check_report())
    return shot(tmp_path_factory.mktemp("html"), page, "check")


def test_the_page_is_not_blank(check_shot: Image.Image) -> None:
    colors = check_shot.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "a handful of colours: nothing (or almost nothing) rendered"
    white = sum(n for n, c in colors if c == (255, 255, 255))
    assert white < 0.9 * check_shot.width * check_shot.height


def test_four_lost_bars_each_with_its_mark_and_label(check_shot: Image.Image) -> None:
    bars = regions(pixels(check_shot, LOST))
    assert len(bars) == TASKS, f"red regions: {bars}"
    for left, top, right, bottom in bars:
        width, height = right - left + 1, bottom - top + 1
        assert 8 <= height <= 16 and width >= 5 * height, f"not a bar: {width}x{height}"
    # one lane each, later tasks further right: the staircase of a connection lost per task
    assert [b[1] for b in bars] == sorted({b[1] for b in bars})
    assert [b[0] for b in bars] == sorted(b[0] for b in bars)
    # the pills (the holes of the letters on them are islands of the same colour)
    pills = [p for p in regions(pixels(check_shot, PILL)) if p[2] - p[0] > 40 and p[3] - p[1] > 8]
    assert len(pills) == TASKS, f"label pills: {pills}"
    for _, top, right, bottom in bars:
        # the ✕ (dark) over the bar's right end
        mark = [p for p in inside(check_shot, (right - 8, top - 3, right + 10, bottom + 3))
                if max(p) < 90]  # fmt: skip
        assert len(mark) >= 10, f"no end mark at the bar ending at x={right}"
        # its label's pill just under the bar's end
        (pill,) = [p for p in pills if 0 <= p[1] - bottom <= 12 and p[0] <= right <= p[2] + 20]
        assert pill[2] - pill[0] > 100, "the pill is too short to hold its label"
        # and text on it
        text = [p for p in inside(check_shot, pill) if p != PILL and max(p) < 200]
        assert len(text) > 30, "the label's pill is empty"


def test_returned_bars_are_green(check_shot: Image.Image) -> None:
    green = regions(pixels(check_shot, RETURNED))
    # the leaky subject's main thread and the fixed subject: a bar per task each
    bars = [b for b in green if b[3] - b[1] + 1 >= 8 and b[1] > 300]
    assert len(bars) >= 2 * TASKS


def test_a_simulation_shows_the_inherited_connection(tmp_path: Path) -> None:
    image = shot(tmp_path, html_reporter.render(build_simulate_report()), "simulate")
    assert regions(pixels(image, LOST)) == []
    assert len(pixels(image, INHERITED)) > 40  # the dashed outline and its tag


def test_it_prints(tmp_path: Path) -> None:
    html = tmp_path / "check.html"
    html.write_text(html_reporter.render(build_check_report()), encoding="utf-8")
    pdf = print_to_pdf(html, tmp_path / "check.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_without_chromium_the_test_fails_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install chromium"):
        screenshot(tmp_path / "page.html", tmp_path / "page.png")
