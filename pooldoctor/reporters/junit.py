"""JUnit XML, so CI systems show a leaking wrapper as a failed test with its evidence.

One testcase per subject. Only the project's own subjects gate (its wrappers, its way of running
async ORM code, and its tasks with ``--task``): they fail when their verdict reaches ``fail_on``.
Built-in modes are reported too, but a mode that leaks says something about the mode, not about
the project, so it only gets a note in ``<system-out>``. An ERROR verdict means the measurement
itself went wrong and is always reported as ``<error>``, whatever ``fail_on`` says.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pooldoctor.core.model import PROJECT_KINDS, Report, SimulateReport, SubjectResult, Verdict
from pooldoctor.core.verdict import FAIL_ON, fails
from pooldoctor.reporters.console import evidence_lines

# The lowest verdict rank that fails a wrapper's testcase; None: nothing fails.
FAIL_ON_RANK: dict[str, int | None] = {
    **{name: least.rank for name, least in FAIL_ON.items()},
    "never": None,
}

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'


def render(report: Report, fail_on: str = "leak") -> str:
    """The report as a JUnit XML document (a string, declared as utf-8)."""
    if fail_on not in FAIL_ON_RANK:
        choices = ", ".join(FAIL_ON_RANK)
        raise ValueError(f"fail_on must be one of {choices}, not {fail_on!r}")
    threshold = FAIL_ON_RANK[fail_on]

    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="pooldoctor")
    properties = ET.SubElement(suite, "properties")
    for key, value in sorted(report.environment.items()):
        ET.SubElement(properties, "property", name=str(key), value=str(value))

    counts = {"failures": 0, "errors": 0, "skipped": 0}
    if project_case(suite, report, fail_on):
        counts["failures"] += 1
    for result in report.results:
        outcome = _testcase(suite, result, threshold)
        if outcome:
            counts[outcome] += 1

    suite.set("tests", str(len(report.results) + 1))
    for name, count in counts.items():
        suite.set(name, str(count))
    suite.set("time", _seconds(report.seconds))
    suites.set("tests", str(len(report.results) + 1))
    suites.set("failures", str(counts["failures"]))
    suites.set("errors", str(counts["errors"]))
    suites.set("time", _seconds(report.seconds))

    ET.indent(suites)
    return XML_DECLARATION + ET.tostring(suites, encoding="unicode") + "\n"


def _testcase(suite: ET.Element, result: SubjectResult, threshold: int | None) -> str | None:
    """Add one testcase; returns the suite counter it adds to, if any."""
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"pooldoctor.{result.kind}",
        name=result.subject,
        time=_seconds(result.seconds),
    )
    if result.verdict is Verdict.SKIPPED:
        ET.SubElement(case, "skipped", message=result.stop_detail or result.summary)
        return "skipped"
    if result.verdict is Verdict.ERROR:
        error = ET.SubElement(case, "error", message=result.summary, type=result.verdict.value)
        error.text = _evidence(result)
        return "errors"
    if threshold is None or result.verdict.rank < threshold:
        return None
    if result.kind in PROJECT_KINDS:
        failure = ET.SubElement(case, "failure", message=result.summary, type=result.verdict.value)
        failure.text = _evidence(result)
        return "failures"
    out = ET.SubElement(case, "system-out")
    out.text = f"measured {result.verdict.value} (built-in mode: informs, does not gate)"
    return None


def project_case(suite: ET.Element, report: Report | SimulateReport, fail_on: str) -> bool:
    """The gate as a testcase of its own: the project's verdict, failed when it reaches
    ``fail_on`` (the exit code's rule); returns whether it failed."""
    case = ET.SubElement(suite, "testcase", classname="pooldoctor.project", name="project verdict",
                         time=_seconds(report.seconds))  # fmt: skip
    if fails(report.verdict, fail_on):
        failure = ET.SubElement(case, "failure", message=report.headline,
                                type=report.verdict.value)  # fmt: skip
        failure.text = report.headline
        return True
    ET.SubElement(case, "system-out").text = f"{report.verdict.value}: {report.headline}"
    return False


def _evidence(result: SubjectResult) -> str:
    return "\n".join([result.summary, *evidence_lines(result)])


def _seconds(value: float) -> str:
    return f"{value:.3f}"
