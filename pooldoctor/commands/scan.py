"""Run every selected check over every file and collect the findings, sorted and suppressed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pooldoctor.config import tool_config
from pooldoctor.errors import UsageError
from pooldoctor.scan.checks import Check, all_checks
from pooldoctor.scan.facts import gather
from pooldoctor.scan.files import DEFAULT_MAX_FILE_SIZE
from pooldoctor.scan.model import ScanFinding, ScanResult
from pooldoctor.scan.source import discover

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_UNITS = {"": 1, "b": 1}
_UNITS.update({f"{p}{s}": 1024**n for n, p in enumerate("kmg", 1) for s in ("", "b", "ib")})
SIZE_TIP = "give bytes or a number with k or M (1024-based): 1048576, 500k, 2M"


def select_checks(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[Check]:
    checks = all_checks()
    known = [c.code for c in checks]
    chosen, dropped = set(select), set(ignore)
    for code in chosen | dropped:
        if not any(k.startswith(code) for k in known):
            close = difflib.get_close_matches(code, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown check code {code!r}", f"{hint}see pooldoctor scan --list-checks"
            )
    # A prefix selects a family: --select PD3 is every PD3xx check.
    return [
        c
        for c in checks
        if (not chosen or any(c.code.startswith(s) for s in chosen))
        and not any(c.code.startswith(i) for i in dropped)
    ]


def parse_size(text: str) -> int | None:
    """Bytes in ``1048576``, ``500k``, ``2M``, ``1.5MB``, ``64KiB``; None when it is not a size."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match[2] not in _UNITS:
        return None
    try:
        size = int(float(match[1]) * _UNITS[match[2]])
    except OverflowError:  # more digits than a float holds
        return None
    return size if size > 0 else None


def max_file_size(given: str | None, root: Path) -> int:
    """``--max-file-size``, else ``max-file-size`` in ``[tool.pooldoctor]`` of the root's
    pyproject.toml (a size string or a number of bytes), else 1 MB."""
    if given is not None:
        size = parse_size(given)
        if size is None:
            raise UsageError(f"--max-file-size {given!r} is not a size", SIZE_TIP)
        return size
    path, config = tool_config(root)
    value = config.get("max-file-size")
    if value is None:
        return DEFAULT_MAX_FILE_SIZE
    size = parse_size(str(value)) if isinstance(value, str | int) else None
    if size is None:
        raise UsageError(
            f"{path}: [tool.pooldoctor] max-file-size = {value!r} is not a size", SIZE_TIP
        )
    return size


def run_scan(
    root: Path,
    paths: Sequence[Path],
    checks: Sequence[Check],
    exclude: Iterable[str] = (),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> ScanResult:
    discovery = discover(root, paths or [root], exclude, max_file_size)
    files = discovery.files
    facts = gather(files)
    findings: list[ScanFinding] = []
    for source in files:
        for check in checks:
            for hit in check.run(source, facts):
                if source.suppressed(hit.line, check.code):
                    continue
                findings.append(
                    ScanFinding(
                        file=source.relative,
                        line=hit.line,
                        column=hit.column,
                        code=check.code,
                        severity=check.severity,
                        message=hit.message,
                        fix=check.fix,
                    )
                )
    return ScanResult(
        root=str(root),
        findings=tuple(sorted(set(findings))),
        files_scanned=len(files),
        skipped=discovery.skipped,
    )
