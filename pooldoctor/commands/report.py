"""``pooldoctor report``: a saved JSON report loaded back, so that any format can be rendered
again without measuring anything (pyinstrument's ``--load-prev``).

:func:`load` reads a report written with ``--format json``. Its ``"command"`` key says which
command wrote it (a report written before that key existed is recognised by its shape), and the
model class of that command is built back by :func:`pooldoctor.core.serde.from_dict`: the JSON of
every report holds every field of its model, so the report loaded back renders exactly as the
original did, in every format. Anything else (a missing file, not JSON, JSON from another tool, a
newer schema) is a :class:`~pooldoctor.errors.UsageError` with a tip.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from pooldoctor import __version__
from pooldoctor.core.model import InspectReport, Report, SimulateReport, from_dict
from pooldoctor.core.verdict import FAIL_ON_CHOICES, report_fails
from pooldoctor.errors import UsageError
from pooldoctor.reporters import render
from pooldoctor.reporters.json import SCHEMA
from pooldoctor.reporters.scan import infer_format as infer_scan_format
from pooldoctor.scan.model import ScanResult

TIP = "pass a file written with --format json by pooldoctor check, scan or simulate"
FORMATS = {
    "check": ("text", "json", "junit", "github", "html"),
    "scan": ("text", "json", "sarif", "github", "gitlab", "junit"),
    "simulate": ("text", "json", "junit", "github", "html"),
    "inspect": ("text", "json", "junit", "github", "html", "openmetrics"),
}
"""The formats each command renders (what ``pooldoctor report --format`` accepts for it)."""
FAIL_ON = {
    "check": FAIL_ON_CHOICES,
    "scan": ("info", "warning", "error", "never"),
    "simulate": FAIL_ON_CHOICES,
    "inspect": ("leak", "pinned", "never"),
}
"""``--fail-on`` values per command."""
DEFAULT_FAIL_ON = {"check": "leak", "scan": "warning", "simulate": "leak", "inspect": "leak"}
SUFFIXES = {".json": "json", ".xml": "junit", ".sarif": "sarif", ".html": "html", ".htm": "html"}


@dataclasses.dataclass(frozen=True)
class Saved:
    """A report read back, with the command that wrote it."""

    command: str
    """check, scan, simulate or inspect."""
    report: Report | ScanResult | SimulateReport | InspectReport
    source: str
    """Where it was read from, for messages."""

    def render(
        self, fmt: str, fail_on: str, *, width: int | None = 100, color: bool = False
    ) -> str:
        """The report as ``fmt``, exactly as the command that wrote it renders it (the JSON does
        not name the checks a scan selected: its SARIF lists every rule)."""
        return render(self.report, fmt, fail_on=fail_on, width=width, color=color)

    def fails(self, fail_on: str) -> bool:
        """Whether the command that wrote the report would exit 1 with this ``--fail-on``."""
        if isinstance(self.report, ScanResult):
            return self.report.reaches(fail_on)
        return report_fails(self.report, fail_on)

    @property
    def outcome(self) -> str:
        """The verdict, or for a scan how many findings."""
        if isinstance(self.report, ScanResult):
            count = len(self.report.findings)
            return f"{count} finding{'' if count == 1 else 's'}"
        return str(self.report.verdict)

    def options(self, fmt: str | None, output: str | None, fail_on: str | None) -> tuple[str, str]:
        """``--format`` (else from the output's suffix, else text) and ``--fail-on`` (else the
        command's default), checked against what the command that wrote the report supports."""
        formats, fail_ons = FORMATS[self.command], FAIL_ON[self.command]
        if fmt is None and self.command == "scan":
            fmt = infer_scan_format(output, None).value
        if fmt is None:
            suffix = SUFFIXES.get(PurePath(output).suffix.lower()) if output else None
            fmt = suffix if suffix in formats else "text"
        if fmt not in formats:
            raise UsageError(
                f"--format {fmt} is not available for {self.source}, a {self.command} report",
                f"use one of {', '.join(formats)}",
            )
        if fail_on is None:
            fail_on = DEFAULT_FAIL_ON[self.command]
        if fail_on not in fail_ons:
            raise UsageError(
                f"--fail-on {fail_on} does not apply to {self.source}, a {self.command} report",
                f"use one of {', '.join(fail_ons)}",
            )
        return fmt, fail_on


def load(path: str) -> Saved:
    """The report in ``path`` (``-``: standard input)."""
    if path == "-":
        return loads(sys.stdin.read(), "standard input")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no saved report at {path}: the file does not exist", TIP) from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a pooldoctor report: it is not UTF-8 text", TIP) from None
    except OSError as exc:
        raise UsageError(f"cannot read the saved report {path}: {exc.strerror}", TIP) from None
    return loads(text, path)


def loads(text: str, source: str) -> Saved:
    """The report in ``text``, read from ``source`` (named in errors)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not a pooldoctor report: not JSON "
            f"({exc.msg} at line {exc.lineno}, column {exc.colno})",
            TIP,
        ) from None
    command = _command(data)
    if command is None:
        raise UsageError(f"{source} is JSON but not a pooldoctor report", TIP)
    schema = data["schema"]
    if schema > SCHEMA:
        writer = data.get("pooldoctor")
        by = f" by pooldoctor {writer}" if isinstance(writer, str) else ""
        raise UsageError(
            f"{source} was written{by} with report schema {schema}; this pooldoctor "
            f"{__version__} reads schema {SCHEMA} and older",
            "upgrade pooldoctor to re-render it: pip install -U pooldoctor",
        )
    try:
        report = MODELS[command](data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        missing = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(
            f"{source} is not a complete pooldoctor {command} report ({missing})", TIP
        ) from None
    return Saved(command=command, report=report, source=source)


def _command(data: Any) -> str | None:
    """Which command wrote ``data``: its ``command`` key, or its shape (reports written before
    that key existed); None for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("schema"), int):
        return None
    if "command" in data:
        command = data["command"]
        return command if command in MODELS else None
    if "celery" in data and "results" in data:
        return "simulate"
    if "files_scanned" in data and "findings" in data:
        return "scan"
    if "database" in data and "results" in data:
        return "check"
    return None


def scan_from_dict(data: Mapping[str, Any]) -> ScanResult:
    """A scan's JSON has no root: an absolute path would break byte-identical output, and no
    format shows it (paths in findings are already relative to it)."""
    return from_dict(ScanResult, {**data, "root": "."})


MODELS: Mapping[str, Any] = {
    "check": lambda data: from_dict(Report, data),
    "scan": scan_from_dict,
    "simulate": lambda data: from_dict(SimulateReport, data),
    "inspect": lambda data: from_dict(InspectReport, data),
}
"""How each command's report is read back."""
