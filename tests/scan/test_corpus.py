"""The acceptance corpus: small projects shaped like real ones, each hazard next to its safe
look-alike, scanned with every check and compared with the findings they should give.

Issue 17 measured 57 % precision on six public projects; this is where precision and recall are
a tested number. Each case is a directory of ``tests/scan/corpus/`` (a project tree: manage.py,
settings, apps, tasks, deployment files) and a ``<case>.expected`` file beside it, outside the
tree so that no scan reads it::

    # comment
    path: pooldoctor/demo/leaky          a tree elsewhere in the repository, instead of <case>/
    files scanned: 9                     files_scanned (one fewer per file unparseable here)
    unparseable before 3.12: a/b.py      PEP 695 and the like: skipped, not counted, below 3.12
    PD103 config/settings.py:15          one finding: code, file, line
        message contains: 30 s           the finding's message names what is in the code
        message lacks: asyncio.run       ... and not what is not

The corpus trees are test data: no file in them is named ``test_*.py``, so pytest never
collects them.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from pooldoctor.commands.scan import run_scan, select_checks
from pooldoctor.scan.model import ScanResult, SkipReason

CORPUS = Path(__file__).parent / "corpus"
REPOSITORY = Path(__file__).resolve().parents[2]

Key = tuple[str, str, int]
"""(code, file, line): what a finding must match."""


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    root: Path
    findings: dict[Key, tuple[list[str], list[str]]]
    """Each expected finding, with the texts its message must contain and must not."""
    files_scanned: int | None
    unparseable_before_312: tuple[str, ...]

    @property
    def expected(self) -> set[Key]:
        if sys.version_info >= (3, 12):
            return set(self.findings)
        return {k for k in self.findings if k[1] not in self.unparseable_before_312}


def load(expected: Path) -> Case:
    root = CORPUS / expected.stem
    findings: dict[Key, tuple[list[str], list[str]]] = {}
    files_scanned = None
    unparseable: list[str] = []
    last: Key | None = None
    for number, raw in enumerate(expected.read_text().splitlines(), start=1):
        line = raw.strip()
        where = f"{expected.name}:{number}"
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "path":
            root = REPOSITORY / value
        elif key == "files scanned":
            files_scanned = int(value)
        elif key == "unparseable before 3.12":
            unparseable.append(value)
        elif key in ("message contains", "message lacks"):
            assert last is not None, f"{where}: {key} before any finding"
            findings[last][0 if key == "message contains" else 1].append(value)
        else:
            code, _, place = line.partition(" ")
            file, _, at = place.rpartition(":")
            assert code.startswith("PD") and file and at.isdigit(), f"{where}: {line!r}"
            last = (code, file, int(at))
            findings[last] = ([], [])
    assert root.is_dir(), f"{expected.name}: no project at {root}"
    return Case(expected.stem, root, findings, files_scanned, tuple(unparseable))


CASES = [load(p) for p in sorted(CORPUS.glob("*.expected"))]
_RESULTS: dict[str, ScanResult] = {}


def scan(case: Case) -> ScanResult:
    """Every check, as ``pooldoctor scan`` with no options; each case scanned once per session."""
    if case.name not in _RESULTS:
        _RESULTS[case.name] = run_scan(case.root, [], select_checks([]))
    return _RESULTS[case.name]


def found(result: ScanResult) -> set[Key]:
    return {(f.code, f.file, f.line) for f in result.findings}


def test_every_case_has_its_expectations() -> None:
    trees = {p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert trees <= {c.name for c in CASES}, "a corpus tree without a .expected file"
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_findings(case: Case) -> None:
    result = scan(case)
    actual, expected = found(result), case.expected
    messages = {(f.code, f.file, f.line): f.message for f in result.findings}
    wrong = "".join(
        f"\n  + {c} {f}:{n}  {messages[c, f, n]}" for c, f, n in sorted(actual - expected)
    )
    missed = "".join(f"\n  - {c} {f}:{n}" for c, f, n in sorted(expected - actual))
    assert actual == expected, f"{case.name}: false positives (+) and misses (-):{wrong}{missed}"


@pytest.mark.parametrize(
    "case", [c for c in CASES if any(a or b for a, b in c.findings.values())], ids=lambda c: c.name
)
def test_case_messages_describe_the_code(case: Case) -> None:
    result = scan(case)
    problems = []
    for finding in result.findings:
        key = (finding.code, finding.file, finding.line)
        contains, lacks = case.findings.get(key, ([], []))
        problems += [
            f"{key}: no {t!r} in {finding.message!r}" for t in contains if t not in finding.message
        ]
        problems += [f"{key}: {t!r} in {finding.message!r}" for t in lacks if t in finding.message]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_files_scanned_and_skipped(case: Case) -> None:
    """Every module parses but those the case says this Python cannot: those are listed as
    skipped and not counted as scanned."""
    result = scan(case)
    unparseable = () if sys.version_info >= (3, 12) else case.unparseable_before_312
    skipped = {s.path for s in result.skipped if s.reason is SkipReason.UNPARSEABLE}
    assert skipped == set(unparseable)
    if case.files_scanned is not None:
        assert result.files_scanned == case.files_scanned - len(unparseable)


def test_precision_and_recall_over_the_corpus() -> None:
    """Precision: the share of findings that are expected; recall: the share of expected
    findings made. Both over every case; ``pytest -s`` prints them."""
    right = made = expected = 0
    for case in CASES:
        actual = found(scan(case))
        right += len(actual & case.expected)
        made += len(actual)
        expected += len(case.expected)
    precision = right / made if made else 1.0
    recall = right / expected if expected else 1.0
    print(
        f"\ncorpus: {len(CASES)} cases, {made} findings, {expected} expected, "
        f"precision {precision:.0%} ({right}/{made}), recall {recall:.0%} ({right}/{expected})"
    )
    assert (precision, recall) == (1.0, 1.0)
