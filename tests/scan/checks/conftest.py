"""Run selected scan checks over a few files written to a temporary directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pooldoctor.commands.scan import run_scan, select_checks
from pooldoctor.scan.model import ScanFinding

FIXTURES = Path(__file__).resolve().parents[3] / "pooldoctor" / "demo"
"""The fixture projects: ``leaky/mysite`` (the blog's recipe) and ``fixed/mysite``."""

ScanSource = Callable[[Path, dict[str, str], str], list[ScanFinding]]


def scan_source(tmp_path: Path, files: dict[str, str], select: str) -> list[ScanFinding]:
    """Write ``files`` (dedented) under ``tmp_path``; scan them with the checks ``select`` names."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return list(run_scan(tmp_path, [], select_checks([select])).findings)


@pytest.fixture(name="scan_source")
def scan_source_fixture() -> ScanSource:
    return scan_source
