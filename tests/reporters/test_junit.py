from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from pooldoctor.core.model import Report, Verdict
from pooldoctor.reporters import junit

from .conftest import DEAD_THREAD, LEAK_SUMMARY


def parse(report: Report, fail_on: str) -> ET.Element:
    text = junit.render(report, fail_on=fail_on)
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def suite_of(root: ET.Element) -> ET.Element:
    suite = root.find("testsuite")
    assert suite is not None
    return suite


def case(root: ET.Element, name: str) -> ET.Element:
    found = root.find(f".//testcase[@name='{name}']")
    assert found is not None
    return found


def counts(root: ET.Element) -> dict[str, int]:
    suite = suite_of(root)
    return {
        "tests": len(suite.findall("testcase")),
        "failures": len(suite.findall("testcase/failure")),
        "errors": len(suite.findall("testcase/error")),
        "skipped": len(suite.findall("testcase/skipped")),
    }


def attribute_counts(root: ET.Element) -> dict[str, int]:
    suite = suite_of(root)
    return {k: int(suite.get(k, "-1")) for k in ("tests", "failures", "errors", "skipped")}


@pytest.mark.parametrize(
    ("fail_on", "expected"),
    [
        # The project's own testcase comes first and fails with the exit code (the wrapper leaks).
        ("leak", {"tests": 5, "failures": 2, "errors": 0, "skipped": 1}),
        ("pinned", {"tests": 5, "failures": 2, "errors": 0, "skipped": 1}),
        ("never", {"tests": 5, "failures": 0, "errors": 0, "skipped": 1}),
    ],
)
def test_counts(sample_report: Report, fail_on: str, expected: dict[str, int]) -> None:
    root = parse(sample_report, fail_on)

    assert counts(root) == expected
    assert attribute_counts(root) == expected


def test_testcase_names_and_classnames(sample_report: Report) -> None:
    root = parse(sample_report, "leak")

    cases = [(c.get("classname"), c.get("name")) for c in suite_of(root).findall("testcase")]
    assert cases == [
        ("pooldoctor.project", "project verdict"),
        ("pooldoctor.wrapper", "run_async_task"),
        ("pooldoctor.mode", "async_to_sync"),
        ("pooldoctor.mode", "thread_sensitive_context"),
        ("pooldoctor.mode", "thread_insensitive"),
    ]
    assert case(root, "run_async_task").get("time") == "1.250"
    assert suite_of(root).get("time") == "4.500"


def test_leaking_wrapper_failure_carries_evidence(sample_report: Report) -> None:
    failure = case(parse(sample_report, "leak"), "run_async_task").find("failure")

    assert failure is not None
    assert LEAK_SUMMARY in failure.get("message", "")
    assert failure.get("type") == "leak"
    text = failure.text or ""
    assert "symptom: PoolTimeout" in text
    assert f"thread {DEAD_THREAD} (owned executor, ended)" in text
    assert "pool: size 3, available 0, checked out 3, lost 3" in text


def test_pinned_mode_informs_without_failing(sample_report: Report) -> None:
    pinned_leak = case(parse(sample_report, "leak"), "thread_sensitive_context")
    pinned_pinned = case(parse(sample_report, "pinned"), "thread_sensitive_context")

    assert pinned_leak.find("system-out") is None
    assert pinned_pinned.find("failure") is None
    out = pinned_pinned.find("system-out")
    assert out is not None
    assert out.text == "measured pinned (built-in mode: informs, does not gate)"


def test_pinned_wrapper_fails_only_with_fail_on_pinned(sample_report: Report) -> None:
    wrapper = dataclasses.replace(sample_report.results[0], verdict=Verdict.PINNED)
    report = dataclasses.replace(
        sample_report, verdict=Verdict.PINNED, results=(wrapper, *sample_report.results[1:])
    )

    assert counts(parse(report, "leak"))["failures"] == 0
    assert counts(parse(report, "pinned"))["failures"] == 2  # the wrapper and the project
    assert counts(parse(report, "never"))["failures"] == 0


@pytest.mark.parametrize("fail_on", ["leak", "pinned", "never"])
def test_error_is_always_an_error(sample_report: Report, fail_on: str) -> None:
    wrapper = dataclasses.replace(sample_report.results[0], verdict=Verdict.ERROR)
    report = dataclasses.replace(
        sample_report, verdict=Verdict.ERROR, results=(wrapper, *sample_report.results[1:])
    )

    root = parse(report, fail_on)

    assert counts(root)["errors"] == 1
    # An error is never a pass: the project's testcase fails unless --fail-on never.
    assert counts(root)["failures"] == (0 if fail_on == "never" else 1)
    error = case(root, "run_async_task").find("error")
    assert error is not None
    assert error.get("message") == LEAK_SUMMARY


def test_skipped_carries_stop_detail(sample_report: Report) -> None:
    skipped = case(parse(sample_report, "leak"), "thread_insensitive").find("skipped")

    assert skipped is not None
    assert skipped.get("message") == "asgiref 3.7 has no ThreadSensitiveContext"


def test_environment_properties(sample_report: Report) -> None:
    properties = suite_of(parse(sample_report, "leak")).findall("properties/property")

    assert {p.get("name"): p.get("value") for p in properties} == dict(sample_report.environment)


def test_unknown_fail_on_is_rejected(sample_report: Report) -> None:
    with pytest.raises(ValueError, match="fail_on"):
        junit.render(sample_report, fail_on="sometimes")


def test_the_project_s_own_task_gates_like_a_wrapper(sample_report: Report) -> None:
    wrapper = sample_report.results[0]
    report = dataclasses.replace(
        sample_report,
        results=(dataclasses.replace(wrapper, kind="task"), *sample_report.results[1:]),
    )

    failure = case(parse(report, "leak"), "run_async_task").find("failure")

    assert failure is not None
    assert failure.get("type") == "leak"
