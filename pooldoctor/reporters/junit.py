"""JUnit XML, so CI systems show a leaking wrapper as a failed test with its evidence.

One testcase per subject. Only the project's own subjects gate (its wrappers, its way of running
async ORM code, and its tasks with ``--task``): they fail when their verdict reaches ``fail_on``.
Built-in modes are reported too, but a mode that leaks says something about the mode, not about
the project, so it only gets a note in ``<system-out>``. An ERROR verdict means the measurement
itself went wrong and is always reported as ``<error>``, whatever ``fail_on`` says.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pooldoctor.core.model import PROJECT_KINDS, Report, SubjectResult, Verdict
from pooldoctor.reporters.console import evidence_lines

# The lowest verdict rank that fails a wrapper's testcase; None: nothing fails.
FAIL_ON_RANK: dict[str, int | None] = {
    "leak": Verdict.LEAK.rank,
    "pinned": Verdict.PINNED.rank,
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
    for result in report.results:
        outcome = _testcase(suite, result, threshold)
        if outcome:
            counts[outcome] += 1

    suite.set("tests", str(len(report.results)))
    for name, count in counts.items():
        suite.set(name, str(count))
    suite.set("time", _seconds(report.seconds))
    suites.set("tests", str(len(report.results)))
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


def _evidence(result: SubjectResult) -> str:
    return "\n".join([result.summary, *evidence_lines(result)])


def _seconds(value: float) -> str:
    return f"{value:.3f}"
