"""scan's GitLab Code Quality and JUnit reports, and the format an --output name implies."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, pooldoctor

from pooldoctor.commands.scan import run_scan
from pooldoctor.core.model import Severity
from pooldoctor.reporters.scan import ScanFormat, as_gitlab, as_junit, infer_format, render
from pooldoctor.scan.checks import all_checks
from pooldoctor.scan.model import ScanFinding, ScanResult, SkippedFile, SkipReason

LEAKY = FIXTURES / "leaky"
GITLAB_SEVERITIES = {"info", "minor", "major", "critical", "blocker"}


def finding(code: str, severity: Severity, line: int, file: str = "shop/tasks.py") -> ScanFinding:
    return ScanFinding(file, line, 5, code, severity, f"{code} message", f"{code} fix")


RESULT = ScanResult(
    root="/srv/shop",
    findings=(
        finding("PD105", Severity.INFO, 3, "shop/settings.py"),
        finding("PD303", Severity.ERROR, 10),
        finding("PD303", Severity.ERROR, 20),
        finding("PD301", Severity.WARNING, 30),
    ),
    files_scanned=7,
    skipped=(SkippedFile("shop/broken.py", SkipReason.UNPARSEABLE, "line 1: invalid syntax"),),
)


def junit(result: ScanResult, fail_on: str) -> ET.Element:
    return ET.fromstring(as_junit(result, fail_on))


def cases(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def failed(root: ET.Element) -> set[tuple[str, str]]:
    return {key for key, case in cases(root).items() if case.find("failure") is not None}


def test_gitlab_issues_have_the_fields_gitlab_reads() -> None:
    issues = json.loads(as_gitlab(RESULT))

    assert len(issues) == 5
    for issue in issues:
        assert {"description", "check_name", "fingerprint", "severity", "location"} <= set(issue)
        assert issue["severity"] in GITLAB_SEVERITIES
        assert isinstance(issue["location"]["lines"]["begin"], int)
    by_check = {(i["check_name"], i["location"]["lines"]["begin"]): i for i in issues}
    assert by_check["PD303", 10]["severity"] == "critical"
    assert by_check["PD301", 30]["severity"] == "major"
    assert by_check["PD105", 3]["severity"] == "info"
    assert by_check["PD303", 10]["location"]["path"] == "shop/tasks.py"
    assert by_check["PD303", 10]["description"] == "PD303 message Fix: PD303 fix"
    skipped = by_check["pooldoctor-skipped-unparseable", 1]
    assert (skipped["severity"], skipped["location"]["path"]) == ("minor", "shop/broken.py")


def test_gitlab_fingerprints_are_unique_and_survive_moved_lines() -> None:
    # GIVEN the same findings after lines were added above them
    moved = ScanResult(
        root=RESULT.root,
        findings=tuple(
            ScanFinding(f.file, f.line + 5, f.column, f.code, f.severity, f.message, f.fix)
            for f in RESULT.findings
        ),
        files_scanned=RESULT.files_scanned,
        skipped=RESULT.skipped,
    )
    before = [i["fingerprint"] for i in json.loads(as_gitlab(RESULT))]
    after = [i["fingerprint"] for i in json.loads(as_gitlab(moved))]
    # THEN every issue keeps its fingerprint, and two identical findings in a file still differ
    assert before == after
    assert len(set(before)) == len(before)


@pytest.mark.parametrize(
    ("fail_on", "failing"),
    [
        ("info", {"PD105", "PD303", "PD301"}),
        ("warning", {"PD303", "PD301"}),
        ("error", {"PD303"}),
        ("never", set()),
    ],
)
def test_junit_fails_the_findings_at_fail_on(fail_on: str, failing: set[str]) -> None:
    root = junit(RESULT, fail_on)

    codes = {classname.rsplit(".", 1)[1] for classname, _ in failed(root) if "PD" in classname}
    assert codes == failing
    # the first testcase is the gate: it fails exactly when the exit code would be 1
    gate = cases(root)["pooldoctor.scan", "scan"]
    assert (gate.find("failure") is not None) == RESULT.reaches(fail_on)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("failures") == str(len(failing) + (1 if failing else 0))


def test_junit_has_one_testcase_per_check_and_file() -> None:
    root = junit(RESULT, "warning")

    found = cases(root)
    pd303 = found["pooldoctor.scan.PD303", "shop/tasks.py"]
    failure = pd303.find("failure")
    assert failure is not None
    assert failure.get("type") == "error"
    assert "shop/tasks.py:10:5: PD303 error" in (failure.text or "")
    assert "shop/tasks.py:20:5: PD303 error" in (failure.text or "")
    skipped = found["pooldoctor.scan.skipped", "shop/broken.py"].find("skipped")
    assert skipped is not None
    assert "does not parse" in (skipped.get("message") or "")
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("skipped")) == ("5", "1")  # gate, 3 groups, 1 skipped


def test_a_clean_scan_is_one_passing_testcase() -> None:
    root = junit(ScanResult(root=".", findings=(), files_scanned=3), "info")

    [case] = root.iter("testcase")
    assert case.find("failure") is None
    assert case.findtext("system-out") == "0 findings in 3 files"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("out.sarif", ScanFormat.SARIF),
        ("reports/out.xml", ScanFormat.JUNIT),
        ("gl-code-quality-report.json", ScanFormat.GITLAB),
        ("pooldoctor.gitlab.json", ScanFormat.GITLAB),
        ("scan.json", ScanFormat.JSON),
        ("scan.txt", ScanFormat.TEXT),
        (None, ScanFormat.TEXT),
    ],
)
def test_the_output_name_implies_the_format(output: str | None, expected: ScanFormat) -> None:
    assert infer_format(output, None) is expected
    assert infer_format(output, "github") is ScanFormat.GITHUB  # --format always wins


def _written(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    out = tmp_path / name
    proc = pooldoctor("scan", "-o", str(out), *args, cwd=LEAKY)
    assert proc.stdout == ""
    return proc.returncode, out.read_text()


def test_scan_writes_junit_for_an_xml_output(tmp_path: Path) -> None:
    code, text = _written(tmp_path, "scan.xml")

    root = ET.fromstring(text)
    assert code == 1
    assert ("pooldoctor.scan.PD303", "mysite/celeryapp.py") in failed(root)
    assert ("pooldoctor.scan", "scan") in failed(root)
    # --fail-on never: nothing fails, and the exit code agrees
    code, text = _written(tmp_path, "never.xml", "--fail-on", "never")
    assert code == 0
    assert failed(ET.fromstring(text)) == set()


def test_scan_writes_gitlab_code_quality(tmp_path: Path) -> None:
    _, text = _written(tmp_path, "gl-code-quality-report.json")
    _, again = _written(tmp_path, "again.gitlab.json")

    issues: list[dict[str, Any]] = json.loads(text)
    assert text == again  # identical scans, identical bytes (fingerprints included)
    assert ("PD303", "mysite/celeryapp.py") in {
        (i["check_name"], i["location"]["path"]) for i in issues
    }


def test_scan_writes_sarif_for_a_sarif_output(tmp_path: Path) -> None:
    _, text = _written(tmp_path, "scan.sarif")

    assert json.loads(text)["version"] == "2.1.0"


@pytest.mark.parametrize("fmt", ["gitlab", "junit"])
def test_a_saved_scan_renders_the_new_formats_as_scan_does(tmp_path: Path, fmt: str) -> None:
    saved = tmp_path / "scan.json"
    pooldoctor("scan", "-o", str(saved), cwd=LEAKY)

    direct = pooldoctor("scan", "--format", fmt, "--fail-on", "error", cwd=LEAKY)
    again = pooldoctor("report", str(saved), "--format", fmt, "--fail-on", "error", cwd=tmp_path)

    assert again.stdout == direct.stdout
    assert again.returncode == direct.returncode == 1


NEW_SYNTAX = (
    "import typing\n\ntype Alias = int\n\n\ndef first[T](items: list[T]) -> T:\n"
    "    return items[0]\n"
)


def test_new_syntax_is_scanned_or_skipped_by_the_grammar_that_runs(tmp_path: Path) -> None:
    # GIVEN a module with PEP 695 syntax (Python 3.12's grammar) and one any Python parses
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "typing_new.py").write_text(NEW_SYNTAX)
    (tmp_path / "mysite" / "settings.py").write_text("DEBUG = False\n")
    # WHEN the scan runs under this Python
    result = run_scan(tmp_path, [], all_checks())
    # THEN a Python that has the grammar scans it; an older one lists it as skipped, naming the
    # line it stopped at, and does not count it as scanned
    if sys.version_info >= (3, 12):
        assert (result.files_scanned, result.skipped) == (2, ())
    else:
        [skipped] = result.skipped
        assert (skipped.path, skipped.reason) == ("mysite/typing_new.py", SkipReason.UNPARSEABLE)
        assert "line 3" in skipped.detail
        assert result.files_scanned == 1


def _shows_skipped(fmt: ScanFormat, text: str) -> tuple[str, str, int | None]:
    """(path, reason, files_scanned) of the one skipped file as ``fmt`` shows them."""
    if fmt is ScanFormat.TEXT:
        [line] = [line for line in text.splitlines() if line.startswith("  ")]
        path, _, why = line.strip().partition(": ")
        return path, why, int(text.splitlines()[-1].split(" in ")[1].split()[0])
    if fmt is ScanFormat.JSON:
        data = json.loads(text)
        [entry] = data["skipped"]
        return entry["path"], f"{entry['reason']}: {entry['detail']}", data["files_scanned"]
    if fmt is ScanFormat.SARIF:
        [run] = json.loads(text)["runs"]
        [note] = run["invocations"][0]["toolExecutionNotifications"]
        uri = note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        return uri, f"{note['descriptor']['id']}: {note['message']['text']}", None
    if fmt is ScanFormat.GITHUB:
        [line] = text.splitlines()
        path = line.split("file=")[1].split(",")[0]
        return path, line.split("::")[2], None
    if fmt is ScanFormat.GITLAB:
        [issue] = json.loads(text)
        return issue["location"]["path"], f"{issue['check_name']}: {issue['description']}", None
    root = ET.fromstring(text)
    [case] = [c for c in root.iter("testcase") if c.find("skipped") is not None]
    scanned = root.find(".//property[@name='files_scanned']")
    assert scanned is not None
    skipped = case.find("skipped")
    assert skipped is not None
    return case.get("name", ""), skipped.get("message", ""), int(scanned.get("value", ""))


@pytest.mark.parametrize("fmt", list(ScanFormat))
def test_every_format_shows_each_skipped_file_with_its_reason(
    tmp_path: Path, fmt: ScanFormat
) -> None:
    # GIVEN a module that does not parse under any Python, next to one that does
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "broken.py").write_text("x = 1\n\ndef broken(:\n    pass\n")
    (tmp_path / "mysite" / "settings.py").write_text("DEBUG = False\n")
    checks = all_checks()
    result = run_scan(tmp_path, [], checks)
    # WHEN the result is rendered in the format
    text = render(result, fmt, checks, "never")
    # THEN the skipped file is there with its reason, and only the other one counts as scanned
    path, why, scanned = _shows_skipped(fmt, text)
    assert result.files_scanned == 1
    assert path == "mysite/broken.py"
    assert "line 3" in why
    assert "parse" in why or "unparseable" in why
    assert scanned in {None, 1}
