"""``pooldoctor report`` end to end: reports saved by a real check (real PostgreSQL, the leaking
fixture) and a real scan, rendered again by the real CLI in every format, with the exit codes of
the command that wrote them; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import FIXTURES, pooldoctor
from reporters.conftest import build_simulate_report

from pooldoctor.commands import report as saved
from pooldoctor.reporters.json import render as simulation_json

LEAKY = FIXTURES / "leaky"
RECIPE = "mysite.celeryapp:async_task_wrapper"
TIP = "pass a file written with --format json by pooldoctor check, scan or simulate"


def report(*args: str, cwd: Path = LEAKY, **kwargs: str) -> subprocess.CompletedProcess[str]:
    return pooldoctor("report", *args, cwd=cwd, **kwargs)


def recipe_line() -> int:
    """The recipe's line that runs the task inside its ThreadSensitiveContext."""
    source = (LEAKY / "mysite" / "celeryapp.py").read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if "return await async_func" in line)


@pytest.fixture(scope="module")
def saved_check(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report saved by a real check of the leaking recipe (JSON from the .json suffix)."""
    path = tmp_path_factory.mktemp("saved") / "check.json"
    proc = pooldoctor(
        "check", "--settings", "mysite.settings", "--wrapper", RECIPE,
        "--modes", "async-to-sync,asyncio-run", "--database", database_url, "-o", str(path),
        cwd=LEAKY,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    return path


@pytest.fixture(scope="module")
def saved_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "scan.json"
    proc = pooldoctor("scan", "--format", "json", "-o", str(path), cwd=LEAKY)
    assert proc.returncode == 1, proc.stderr
    return path


def test_a_saved_check_renders_back_byte_identical_json(saved_check: Path) -> None:
    # GIVEN a report saved by check  WHEN it is rendered again as JSON
    proc = report(str(saved_check), "--format", "json")
    # THEN nothing is lost: the same bytes, and the same exit code as check's
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == saved_check.read_text()
    loaded = saved.load(str(saved_check))
    assert saved.loads(proc.stdout, "again").report == loaded.report


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github"])
def test_every_format_of_a_saved_check(saved_check: Path, fmt: str) -> None:
    proc = report(str(saved_check), "--format", fmt)

    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == saved.load(str(saved_check)).render(fmt, "leak")


def test_the_saved_check_as_annotations_and_junit(saved_check: Path) -> None:
    github = report(str(saved_check), "--format", "github").stdout.splitlines()
    junit = ET.fromstring(report(str(saved_check), "--format", "junit").stdout.encode())

    # The headline speaks for the project, whose verdict fails the run: an error.
    assert github[0].startswith("::error title=pooldoctor check%3A leak::LEAK: ")
    # The leak site sits on the recipe's own line, not on pooldoctor's synthetic task.
    site = f"::error file=mysite/celeryapp.py,line={recipe_line()},"
    assert [line for line in github if line.startswith(site)] == [
        line for line in github if "connections lost::" in line
    ]
    assert any(line.startswith(f"{site}title={RECIPE.replace(':', '%3A')}%3A ") for line in github)
    assert "::error title=PD201::" in "\n".join(github)
    suite = junit.find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "2"  # the project's testcase, and the wrapper's


@pytest.mark.parametrize(
    ("verdict", "fail_on", "code"),
    [
        ("leak", None, 1),
        ("leak", "pinned", 1),
        ("leak", "never", 0),
        ("pinned", None, 0),
        ("pinned", "pinned", 1),
        ("clean", "pinned", 0),
        ("error", "leak", 1),
        ("error", "never", 0),
    ],
)
def test_exit_code_follows_fail_on_as_check_would(
    saved_check: Path, tmp_path: Path, verdict: str, fail_on: str | None, code: int
) -> None:
    # GIVEN the saved report with the wrapper's verdict, and so the project's, set to ``verdict``
    data = json.loads(saved_check.read_text())
    data["verdict"] = verdict
    for result in data["results"]:
        if result["kind"] == "wrapper":
            result["verdict"] = verdict
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    # WHEN it is re-rendered for CI
    args = ("--fail-on", fail_on) if fail_on else ()
    proc = report(str(path), "--format", "github", *args)
    # THEN the exit code is check's for that verdict
    assert proc.returncode == code, proc.stderr


def test_modes_never_gate(saved_check: Path, tmp_path: Path) -> None:
    data = json.loads(saved_check.read_text())
    data["results"] = [r for r in data["results"] if r["kind"] == "mode"]
    data["verdict"] = "unmeasured"  # what check says when nothing of the project's ran
    path = tmp_path / "modes.json"
    path.write_text(json.dumps(data))

    assert report(str(path), "--fail-on", "pinned").returncode == 0
    assert report(str(path), "--fail-on", "unmeasured").returncode == 1


def test_output_file_with_format_from_its_suffix(saved_check: Path, tmp_path: Path) -> None:
    out = tmp_path / "pooldoctor.xml"

    proc = report(str(saved_check), "-o", str(out), "--fail-on", "never")

    assert proc.returncode == 0
    assert proc.stdout == ""
    assert proc.stderr == f"pooldoctor: leak: report written to {out}\n"
    assert ET.fromstring(out.read_bytes()).tag == "testsuites"


def test_standard_input_and_the_console_script(saved_check: Path) -> None:
    script = Path(sys.executable).parent / "pooldoctor"
    proc = subprocess.run(
        [str(script), "report", "-", "--format", "json"],
        input=saved_check.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == saved_check.read_text()


def test_check_itself_prints_annotations(database_url: str) -> None:
    # GIVEN the leaking recipe  WHEN check runs in a GitHub job
    proc = pooldoctor(
        "check", "--settings", "mysite.settings", "--wrapper", RECIPE, "--modes", "async-to-sync",
        "--database", database_url, "--format", "github", cwd=LEAKY,
    )  # fmt: skip
    # THEN it fails the job, with an error annotation on the recipe's line
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("::error title=pooldoctor check%3A leak::")
    assert any(
        line.startswith(f"::error file=mysite/celeryapp.py,line={recipe_line()},") for line in lines
    )
    assert all(line.startswith(("::notice ", "::warning ", "::error ")) for line in lines)


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "gitlab", "junit"])
def test_a_saved_scan_renders_as_scan_does(saved_scan: Path, fmt: str) -> None:
    direct = pooldoctor("scan", "--format", fmt, cwd=LEAKY)

    again = report(str(saved_scan), "--format", fmt)

    assert again.returncode == direct.returncode == 1
    if fmt == "sarif":  # the saved JSON does not say where the scan ran: no file:// base
        sarif = json.loads(direct.stdout)
        del sarif["runs"][0]["originalUriBaseIds"]
        assert json.loads(again.stdout) == sarif
    else:
        assert again.stdout == direct.stdout


@pytest.mark.parametrize(("fail_on", "code"), [(None, 1), ("error", 1), ("never", 0)])
def test_a_saved_scan_gates_as_scan_does(saved_scan: Path, fail_on: str | None, code: int) -> None:
    args = ("--fail-on", fail_on) if fail_on else ()

    assert report(str(saved_scan), *args).returncode == code


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github"])
def test_a_saved_simulation(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "simulate.json"
    path.write_text(simulation_json(build_simulate_report()))

    proc = report(str(path), "--format", fmt)

    assert proc.returncode == 1, proc.stderr  # the wrapper's fleet is unsafe
    assert proc.stdout == saved.load(str(path)).render(fmt, "leak")
    assert report(str(path), "--fail-on", "never").returncode == 0


def _fails_with_one_line(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("pooldoctor: error: ")
    for text in expected:
        assert text in line


def test_a_missing_file(tmp_path: Path) -> None:
    _fails_with_one_line(
        report(str(tmp_path / "gone.json")), f"no saved report at {tmp_path}/gone.json", TIP
    )


def test_a_directory(tmp_path: Path) -> None:
    _fails_with_one_line(report(str(tmp_path)), "cannot read the saved report", TIP)


def test_not_json(saved_check: Path, tmp_path: Path) -> None:
    # A JUnit report is what a CI step most plausibly passes by mistake.
    xml = tmp_path / "pooldoctor.xml"
    report(str(saved_check), "-o", str(xml))

    _fails_with_one_line(
        report(str(xml)), f"{xml} is not a pooldoctor report: not JSON (Expecting value", TIP
    )


def test_json_from_something_else(tmp_path: Path) -> None:
    sarif = tmp_path / "pooldoctor.sarif"
    pooldoctor("scan", "--format", "sarif", "-o", str(sarif), cwd=LEAKY)

    _fails_with_one_line(report(str(sarif)), "is JSON but not a pooldoctor report", TIP)


def test_a_newer_schema(saved_check: Path, tmp_path: Path) -> None:
    data = {**json.loads(saved_check.read_text()), "schema": 2, "pooldoctor": "9.9.0"}
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))

    _fails_with_one_line(
        report(str(path)),
        "was written by pooldoctor 9.9.0 with report schema 2",
        "pip install -U pooldoctor",
    )


def test_an_incomplete_report(saved_check: Path, tmp_path: Path) -> None:
    data = json.loads(saved_check.read_text())
    del data["results"][0]["evidence"]
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(data))

    _fails_with_one_line(
        report(str(path)), "is not a complete pooldoctor check report (missing 'evidence')", TIP
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--format", "sarif"), "--format sarif is not available for"),
        (("--fail-on", "warning"), "--fail-on warning does not apply to"),
    ],
)
def test_options_a_check_report_does_not_have(
    saved_check: Path, args: tuple[str, ...], expected: str
) -> None:
    _fails_with_one_line(report(str(saved_check), *args), expected, "a check report", "use one of")
