"""Reporters: every output format renders the same
:class:`~pooldoctor.core.model.Report` to a string.

Each module exposes ``render(report) -> str`` and computes nothing: verdicts, summaries and
findings are decided before a reporter sees them, so all formats always agree.
"""

from __future__ import annotations

import enum
from pathlib import PurePath

from pooldoctor.core.model import Report
from pooldoctor.reporters import console, github, json, junit


class Format(enum.StrEnum):
    """The output formats ``--format`` accepts."""

    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"
    GITHUB = "github"


def render(
    report: Report,
    fmt: Format,
    *,
    fail_on: str = "leak",
    width: int | None = None,
    color: bool = False,
) -> str:
    """Render ``report`` as ``fmt``; options a format does not use are ignored."""
    if fmt is Format.TEXT:
        return console.render(report, width=width, color=color)
    if fmt is Format.JSON:
        return json.render(report)
    if fmt is Format.JUNIT:
        return junit.render(report, fail_on=fail_on)
    if fmt is Format.GITHUB:
        return github.render(report, fail_on=fail_on)
    raise ValueError(f"unknown report format {fmt!r}")


def infer_format(output_path: str | None, given: str | None) -> Format:
    """The format asked for, else the one the output file's suffix implies, else text.

    Lets ``--output report.xml`` do the expected thing without also passing ``--format junit``.
    """
    if given:
        return Format(given.lower())
    if output_path:
        suffix = PurePath(output_path).suffix.lower()
        if suffix == ".json":
            return Format.JSON
        if suffix == ".xml":
            return Format.JUNIT
    return Format.TEXT
