"""Saved reports: what ``--format json`` wrote, loaded back, renders as the original did."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pooldoctor.commands import report as saved
from pooldoctor.core.model import (
    DatabaseInfo,
    Report,
    SimulateReport,
    SubjectResult,
    SubjectRun,
    Verdict,
)
from pooldoctor.errors import UsageError
from pooldoctor.reporters import Format, render
from pooldoctor.reporters import json as json_reporter
from pooldoctor.reporters.json import render as simulation_json
from pooldoctor.reporters.scan import ScanFormat, as_json
from pooldoctor.reporters.scan import render as render_scan
from pooldoctor.scan.checks import all_checks
from pooldoctor.scan.model import ScanResult

from .conftest import build_report

FAIL_ON = ["leak", "pinned", "never"]
# Added to check's JSON after its first release: a report saved before still loads.
LATER_KEYS = ("command", "description", "tasks_planned", "leak_sites", "checkouts", "returns",
              "timeline")  # fmt: skip


def loaded(text: str) -> saved.Saved:
    return saved.loads(text, "saved.json")


def test_every_field_of_a_check_report_is_saved(sample_report: Report) -> None:
    """A field added to the report but not to its JSON would be lost by pooldoctor report."""
    data = json.loads(json_reporter.render(sample_report))
    result = data["results"][0]
    saved_keys = set(result) | set(result["evidence"])

    assert {f.name for f in dataclasses.fields(SubjectRun)} <= saved_keys
    assert {f.name for f in dataclasses.fields(SubjectResult)} - {"run"} <= saved_keys
    assert {f.name for f in dataclasses.fields(DatabaseInfo)} == set(data["database"])
    assert {f.name for f in dataclasses.fields(Report)} - {"fix_subject"} <= set(data)
    assert set(data["fix"]) == {
        "code", "subject", "applied_to", "measured", "detail", "diff", "timeline"
    }  # fmt: skip


def test_a_check_report_loads_back_equal(sample_report: Report) -> None:
    back = loaded(json_reporter.render(sample_report))

    assert back.command == "check"
    assert back.report == sample_report


@pytest.mark.parametrize("fail_on", FAIL_ON)
@pytest.mark.parametrize("fmt", list(Format))
def test_a_loaded_check_report_renders_as_the_original(
    sample_report: Report, fmt: Format, fail_on: str
) -> None:
    back = loaded(json_reporter.render(sample_report))

    assert back.render(fmt.value, fail_on) == render(sample_report, fmt, fail_on=fail_on, width=100)


@pytest.mark.parametrize("fmt", list(ScanFormat))
def test_a_loaded_scan_renders_as_the_original(sample_scan: ScanResult, fmt: ScanFormat) -> None:
    back = loaded(as_json(sample_scan))

    assert back.command == "scan"
    assert back.report == dataclasses.replace(sample_scan, root=".")
    assert back.render(fmt.value, "warning") == render_scan(sample_scan, fmt, all_checks())


@pytest.mark.parametrize("fail_on", FAIL_ON)
@pytest.mark.parametrize("fmt", sorted(saved.FORMATS["simulate"]))
def test_a_loaded_simulation_renders_as_the_original(
    sample_simulation: SimulateReport, fmt: str, fail_on: str
) -> None:
    back = loaded(simulation_json(sample_simulation))

    assert back.command == "simulate"
    assert back.render(fmt, fail_on) == render(sample_simulation, fmt, fail_on=fail_on, width=100)
    # every field comes back, inherited_pool included
    assert back.report == sample_simulation


def test_a_report_saved_before_the_later_keys_still_loads(sample_report: Report) -> None:
    data = json.loads(json_reporter.render(sample_report))
    del data["command"]
    for key in LATER_KEYS[1:]:
        for result in data["results"]:
            del result[key]
    for key in ("health_checks", "reserved_connections"):
        del data["database"][key]

    back = loaded(json.dumps(data))

    assert back.command == "check"
    assert isinstance(back.report, Report)
    wrapper = back.report.results[0]
    assert wrapper.leak_sites == ()
    assert wrapper.tasks_planned == 3  # from its census
    assert back.report.headline == sample_report.headline


@pytest.mark.parametrize(
    ("fixture", "command"),
    [("sample_report", "check"), ("sample_scan", "scan"), ("sample_simulation", "simulate")],
)
def test_without_a_command_key_the_shape_tells(
    request: pytest.FixtureRequest, fixture: str, command: str
) -> None:
    value = request.getfixturevalue(fixture)
    if command == "check":
        text = json_reporter.render(value)
    elif command == "scan":
        text = as_json(value)
    else:
        text = simulation_json(value)
    data = json.loads(text)
    assert data.pop("command") == command

    assert loaded(json.dumps(data)).command == command


@pytest.mark.parametrize(
    ("command", "verdict", "fail_on", "fails"),
    [
        ("check", Verdict.LEAK, "leak", True),
        ("check", Verdict.LEAK, "never", False),
        ("check", Verdict.PINNED, "leak", False),
        ("check", Verdict.PINNED, "pinned", True),
        ("check", Verdict.ERROR, "leak", True),
        ("check", Verdict.CLEAN, "pinned", False),
        ("check", Verdict.UNMEASURED, "leak", False),
        ("check", Verdict.UNMEASURED, "unmeasured", True),
    ],
)
def test_fails_as_check_would(
    sample_report: Report, command: str, verdict: Verdict, fail_on: str, fails: bool
) -> None:
    # The saved report's verdict is the project's: the gate reads it, as check's exit code does.
    wrapper = dataclasses.replace(sample_report.results[0], verdict=verdict)
    report = dataclasses.replace(
        sample_report, verdict=verdict, results=(wrapper, *sample_report.results[1:])
    )

    assert loaded(json_reporter.render(report)).fails(fail_on) is fails


def test_the_project_s_own_task_fails_a_check(sample_report: Report) -> None:
    wrapper = sample_report.results[0]
    report = dataclasses.replace(
        sample_report,
        results=(dataclasses.replace(wrapper, kind="task"), *sample_report.results[1:]),
    )

    assert loaded(json_reporter.render(report)).fails("leak") is True


def test_modes_never_fail_a_check(sample_report: Report) -> None:
    # Built-in modes only: the project is unmeasured, which fails only --fail-on unmeasured.
    report = dataclasses.replace(
        sample_report, verdict=Verdict.UNMEASURED, results=sample_report.results[1:]
    )

    assert loaded(json_reporter.render(report)).fails("pinned") is False
    assert loaded(json_reporter.render(report)).fails("unmeasured") is True


@pytest.mark.parametrize(("fail_on", "fails"), [("info", True), ("error", True), ("never", False)])
def test_fails_as_scan_would(sample_scan: ScanResult, fail_on: str, fails: bool) -> None:
    assert loaded(as_json(sample_scan)).fails(fail_on) is fails


@pytest.mark.parametrize(("fail_on", "fails"), [("leak", True), ("never", False)])
def test_fails_as_simulate_would(
    sample_simulation: SimulateReport, fail_on: str, fails: bool
) -> None:
    assert loaded(simulation_json(sample_simulation)).fails(fail_on) is fails


@pytest.mark.parametrize(
    ("command", "output", "given", "expected"),
    [
        ("check", None, None, ("text", "leak")),
        ("check", "out.xml", None, ("junit", "leak")),
        ("check", "out.sarif", None, ("text", "leak")),
        ("check", "out.json", "github", ("github", "leak")),
        ("scan", "out.sarif", None, ("sarif", "warning")),
        ("scan", "out.xml", None, ("junit", "warning")),
        ("scan", "gl-code-quality-report.json", None, ("gitlab", "warning")),
        ("simulate", None, "junit", ("junit", "leak")),
    ],
)
def test_options_default_as_the_command_that_wrote_it(
    command: str, output: str | None, given: str | None, expected: tuple[str, str]
) -> None:
    report = saved.Saved(command=command, report=build_report(), source="s.json")

    assert report.options(given, output, None) == expected


@pytest.mark.parametrize(
    ("command", "fmt", "fail_on", "message"),
    [
        ("check", "sarif", None, "--format sarif is not available for s.json, a check report"),
        ("check", "gitlab", None, "--format gitlab is not available for s.json, a check report"),
        ("check", None, "warning", "--fail-on warning does not apply to s.json, a check report"),
        ("scan", None, "leak", "--fail-on leak does not apply to s.json, a scan report"),
    ],
)
def test_options_the_command_does_not_have_are_usage_errors(
    command: str, fmt: str | None, fail_on: str | None, message: str
) -> None:
    report = saved.Saved(command=command, report=build_report(), source="s.json")

    with pytest.raises(UsageError, match=message):
        report.options(fmt, None, fail_on)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "saved.json is not a pooldoctor report: not JSON (Expecting value at line 1"),
        ("<?xml?>", "not JSON"),
        ("[1, 2]", "saved.json is JSON but not a pooldoctor report"),
        ('{"version": "2.1.0", "runs": []}', "JSON but not a pooldoctor report"),
        ('{"schema": "1", "results": []}', "JSON but not a pooldoctor report"),
        ('{"schema": 1, "command": "profile"}', "JSON but not a pooldoctor report"),
        ('{"schema": 1, "command": "check"}', "not a complete pooldoctor check report"),
        ('{"schema": 1, "files_scanned": 2, "findings": [{}]}', "complete pooldoctor scan"),
        (
            '{"schema": 2, "command": "check", "pooldoctor": "9.0"}',
            "saved.json was written by pooldoctor 9.0 with report schema 2; this pooldoctor",
        ),
    ],
)
def test_anything_else_is_a_usage_error_with_a_tip(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        loaded(text)

    assert message in caught.value.message
    assert caught.value.tip
    assert "\n" not in str(caught.value)
