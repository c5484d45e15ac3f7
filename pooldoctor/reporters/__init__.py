"""Reporters: every command's report in every format, rendered to a string.

One module per format for check (``console``, ``json``, ``junit``, ``github``), one per other
command for its formats (``simulate``, ``inspect``, ``scan``), all built on the same pieces (the
console and its tables, the JSON of the model, annotations, leak site lines). :func:`render`
takes any report. Nothing here computes: verdicts, summaries and findings are decided before a
reporter sees them, so all formats always agree.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

from pooldoctor.core.model import InspectReport, Report, SimulateReport
from pooldoctor.reporters import console, github, json, junit
from pooldoctor.scan.model import ScanResult

if TYPE_CHECKING:
    from pooldoctor.scan.checks import Check


class Format(enum.StrEnum):
    """The output formats ``--format`` accepts."""

    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"
    GITHUB = "github"
    HTML = "html"


OPENMETRICS = "openmetrics"
"""inspect's own extra format: the fleet's census as Prometheus metrics."""


def render(
    report: Report | SimulateReport | InspectReport | ScanResult,
    fmt: str,
    *,
    fail_on: str = "leak",
    width: int | None = 100,
    color: bool = False,
    checks: Sequence[Check] | None = None,
) -> str:
    """Render any command's report as ``fmt``; options a format does not use are ignored (scan's
    SARIF lists ``checks``, every check without them)."""
    if fmt == Format.HTML and not isinstance(report, ScanResult):
        from pooldoctor.reporters import html

        return html.render(report)
    if fmt == OPENMETRICS and isinstance(report, InspectReport):
        from pooldoctor.reporters import openmetrics

        return openmetrics.render(report)
    if isinstance(report, SimulateReport | InspectReport):
        from pooldoctor.reporters import inspect, simulate

        # Each has its text, JUnit and GitHub renderers; the JSON is the model, as for all.
        own = simulate if isinstance(report, SimulateReport) else inspect
        if fmt == Format.JSON:
            return json.render(report)
        if fmt == Format.JUNIT:
            return own.as_junit(report, fail_on)
        if fmt == Format.GITHUB:
            return own.as_github(report, fail_on)
        return own.as_text(report, width=width, color=color)
    if isinstance(report, ScanResult):
        from pooldoctor.reporters import scan
        from pooldoctor.scan.checks import all_checks

        chosen = all_checks() if checks is None else checks
        return scan.render(report, scan.ScanFormat(fmt), chosen, fail_on=fail_on)
    fmt = Format(fmt)
    if fmt is Format.TEXT:
        return console.render(report, width=width, color=color)
    if fmt is Format.JSON:
        return json.render(report)
    if fmt is Format.JUNIT:
        return junit.render(report, fail_on=fail_on)
    if fmt is Format.GITHUB:
        return github.render(report, fail_on=fail_on)
    raise ValueError(f"unknown report format {fmt!r}")


def infer_format(output_path: str | None, given: str | None) -> str:
    """The format asked for, else the one the output file's suffix implies, else text (a
    command's own choices have checked what was asked for).

    Lets ``--output report.xml`` do the expected thing without also passing ``--format junit``.
    """
    if given:
        given = given.lower()
        return Format(given) if given in {f.value for f in Format} else given
    suffix = PurePath(output_path).suffix.lower() if output_path else ""
    return SUFFIXES.get(suffix, Format.TEXT)


SUFFIXES = {".json": Format.JSON, ".xml": Format.JUNIT, ".html": Format.HTML, ".htm": Format.HTML}
"""The format an ``--output`` file's suffix implies."""
