"""Render an HTML file the way a person would see it: Debian's headless Chromium, to PNG or PDF.

Used by the HTML report's browser test. Chromium runs with a fresh profile in a temporary
directory (removed after), no network services of its own, and a timeout. Its absence is a
failure, not a skip: a report nobody looked at in a browser is not tested.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 90.0
WIDTH = 1280


def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed: apt-get install chromium", pytrace=False)
    return CHROMIUM


def screenshot(html: Path, png: Path, *, height: int = 2000) -> Path:
    """``html`` rendered in a ``WIDTH`` x ``height`` window, saved as ``png``."""
    _run(html, [f"--window-size={WIDTH},{height}", f"--screenshot={png}"], png)
    return png


def print_to_pdf(html: Path, pdf: Path) -> Path:
    """``html`` printed (its ``@media print`` rules apply) to ``pdf``."""
    _run(html, [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"], pdf)
    return pdf


def _run(html: Path, args: list[str], out: Path) -> None:
    profile = tempfile.mkdtemp(prefix="pooldoctor-chromium-")
    command = [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        *args,
        html.resolve().as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish within {TIMEOUT:g} s: {' '.join(command)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not out.exists() or out.stat().st_size == 0:
        pytest.fail(
            f"Chromium wrote no {out.name} (exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
