"""GitHub Actions workflow commands: what was measured, as annotations on the run and the diff.

https://docs.github.com/actions/reference/workflow-commands-for-github-actions

Each leak site of the project's own subjects (its wrappers, and its tasks with ``--task``) becomes
an annotation at the line of the project's code that checked the connections out, with the
subject, the count and the reason; such a subject with a bad verdict and no site, and every
finding, gets one without a file. An annotation names a file only when it is in the project's
tree (relative to the project root, not an installed library's, not pooldoctor's own): GitHub
cannot place one elsewhere, so a site outside it keeps its location in the message only.

Levels follow the gate, so that the errors on a run are what failed it: an annotation is an
``error`` when what it reports reaches ``--fail-on`` (a lost connection reaches ``leak``, a pinned
one ``pinned``, an error verdict anything but ``never``) and a ``warning`` otherwise. Built-in
modes inform and never gate (as in JUnit): a mode that leaks or pins is a ``notice``, one whose
measurement went wrong a ``warning``. Findings keep their severity (info is a notice).

GitHub shows only the first few annotations of each level per step, so the headline comes first,
then the project's wrappers and the findings, and the built-in modes last.
"""

from __future__ import annotations

from collections.abc import Iterator

from pooldoctor.core.forensics.stacks import in_project_tree
from pooldoctor.core.model import (
    PROJECT_KINDS,
    Finding,
    LeakKind,
    LeakSite,
    Report,
    Severity,
    SimulateReport,
    SubjectResult,
    Verdict,
)
from pooldoctor.core.verdict import FAIL_ON_CHOICES, fails
from pooldoctor.reporters.sites import site_lines

LEVELS = {Severity.INFO: "notice", Severity.WARNING: "warning", Severity.ERROR: "error"}
MODE_NOTE = "(built-in mode: informs, does not gate)"
_KIND_VERDICT = {LeakKind.LOST: Verdict.LEAK, LeakKind.PINNED: Verdict.PINNED}


def escape_data(text: str) -> str:
    """A message: ``%``, CR and LF would end or corrupt the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value (file, title): ``:`` and ``,`` also separate properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str,
    message: str,
    *,
    title: str | None = None,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
) -> str:
    """``::level file=F,line=L,col=C,title=T::message``, with only the properties given."""
    properties = [
        f"{name}={value}"
        for name, value in (
            ("file", None if file is None else escape_property(file)),
            ("line", line),
            ("col", col),
            ("title", None if title is None else escape_property(title)),
        )
        if value is not None
    ]
    head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
    return f"{head}::{escape_data(message)}"


def render(report: Report, fail_on: str = "leak") -> str:
    """The check report as workflow commands, one per line."""
    check_fail_on(fail_on)
    title = f"pooldoctor check: {report.verdict.value}"
    lines = [annotation(headline_level(report, fail_on), report.headline, title=title)]
    own = [r for r in report.results if r.kind in PROJECT_KINDS]
    modes = [r for r in report.results if r.kind not in PROJECT_KINDS]
    for result in own:
        lines.extend(_own(result, fail_on))
    lines.extend(finding_annotation(f) for f in report.findings)
    lines.extend(
        mode_annotation(r.subject, r.verdict.value, _subject_lines(r)) for r in modes if _bad(r)
    )
    return "\n".join(lines) + "\n"


def headline_level(report: Report | SimulateReport, fail_on: str) -> str:
    """The headline speaks for the project: an error when its verdict fails the run."""
    return "error" if fails(report.verdict, fail_on) else "notice"


def annotated_line(site: LeakSite) -> tuple[str, int | None] | None:
    """Where an annotation for ``site`` goes: its file and line when the file is in the project's
    tree; None for one outside it (absolute, in site-packages, pooldoctor's own) or unknown."""
    if site.file is None or not in_project_tree(site.file):
        return None
    return site.file, site.line


def check_fail_on(fail_on: str) -> None:
    if fail_on not in FAIL_ON_CHOICES:
        choices = ", ".join(FAIL_ON_CHOICES)
        raise ValueError(f"fail_on must be one of {choices}, not {fail_on!r}")


def _bad(result: SubjectResult) -> bool:
    return result.verdict not in (Verdict.CLEAN, Verdict.SKIPPED)


def _own(result: SubjectResult, fail_on: str) -> Iterator[str]:
    if not _bad(result):
        return
    head = _subject_lines(result)
    if not result.leak_sites:
        level = "error" if fails(result.verdict, fail_on) else "warning"
        title = f"{result.subject}: {result.verdict.value}"
        yield annotation(level, "\n".join(head), title=title)
    for site in result.leak_sites:
        yield site_annotation(result.subject, head, site, fail_on)
    fix = result.fix
    if fix is not None and fix.proven and fix.diff:
        # The diff that measured clean, where the job's summary shows it: a notice, not a gate.
        title = f"{result.subject}: fix measured clean ({fix.subject})"
        yield annotation("notice", f"Patched as below, {result.subject} measured clean "
                         f"in this run.\n{fix.diff}", title=title)  # fmt: skip


def site_annotation(subject: str, head: list[str], site: LeakSite, fail_on: str) -> str:
    level = "error" if fails(_KIND_VERDICT[site.kind], fail_on) else "warning"
    noun = "connection" if site.count == 1 else "connections"
    title = f"{subject}: {site.count} {noun} {site.kind.value}"
    where = annotated_line(site)
    file, line = where if where is not None else (None, None)
    return annotation(
        level, "\n".join([*head, *site_lines(site)]), title=title, file=file, line=line
    )


def mode_annotation(subject: str, verdict: str, head: list[str]) -> str:
    level = "warning" if verdict in (Verdict.ERROR, Verdict.UNSAFE) else "notice"
    title = f"{subject} (built-in mode): {verdict}"
    return annotation(level, "\n".join([*head, MODE_NOTE]), title=title)


def finding_annotation(finding: Finding) -> str:
    return annotation(
        LEVELS[finding.severity], f"{finding.message} Fix: {finding.fix}", title=finding.code
    )


def _subject_lines(result: SubjectResult) -> list[str]:
    """The verdict and what the run itself showed: how it stopped, and symptoms."""
    lines = [f"{result.subject} ({result.kind}): {result.verdict.value}: {result.summary}"]
    if result.stop_detail:
        lines.append(f"stopped ({result.stop.value}): {result.stop_detail}")
    lines.extend(f"symptom: {symptom}" for symptom in result.symptoms)
    return lines
