"""Fit a fix to each wrapper that leaks or pins, and measure it in the same run.

After the first round of subjects, every project wrapper judged ``leak`` or ``pinned`` is
rewritten into the closest pattern that measured clean as a built-in mode in that round
(:func:`pooldoctor.core.fixes.patch.fit`) and run once more, patched, as its own subject
(``WRAPPER + fix``), judged by the same rules. The result is the wrapper's
:class:`~pooldoctor.core.model.Fix`: proven when that run measured clean. The proof run is not a
result of its own: the project's code was not changed, so it must not change the project's
verdict or exit code. A wrapper pooldoctor cannot rewrite gets the pattern that measured clean,
marked as not applied to it, with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pooldoctor.core import verdict
from pooldoctor.core.fixes import CannotPatch
from pooldoctor.core.fixes.diff import unified
from pooldoctor.core.fixes.patch import Patch, fit
from pooldoctor.core.fixes.source import locate
from pooldoctor.core.model import Fix, SubjectResult, SubjectRun, Verdict
from pooldoctor.core.probes import clean_pattern
from pooldoctor.core.project import ProjectSpec
from pooldoctor.core.subjects import Subject, load_wrapper
from pooldoctor.errors import PooldoctorError

Measure = Callable[[list[Subject]], list[SubjectRun]]
"""Runs subjects as the first round did (same tasks, timeout, tracking) and returns their runs."""

PROOF_SUFFIX = " + fix"
NEEDS_FIX = (Verdict.LEAK, Verdict.PINNED)


def prove_fixes(
    spec: ProjectSpec, results: Sequence[SubjectResult], clean: Sequence[str], measure: Measure
) -> dict[str, Fix]:
    """The fix for each wrapper among ``results`` that leaks or pins, by wrapper name; ``clean``:
    the built-in modes that measured clean in the same run."""
    generic = clean_pattern(clean)
    if generic is None or generic.fix is None:
        return {}
    fixes: dict[str, Fix] = {}
    patches: list[tuple[str, Patch]] = []
    for result in results:
        if result.kind != "wrapper" or result.verdict not in NEEDS_FIX:
            continue
        try:
            patches.append((result.subject, fit_wrapper(result.subject, clean, spec.cwd)))
        except CannotPatch as exc:
            # Not applied: ``detail`` says why, ``code`` is the pattern as the mode ran it.
            fixes[result.subject] = Fix(subject=generic.name, code=generic.fix, detail=str(exc))
    proofs = [
        Subject(name=f"{name}{PROOF_SUFFIX}", kind="wrapper", patch=wire(name, patch))
        for name, patch in patches
    ]
    proof_runs = measure(proofs) if proofs else []
    for (name, patch), run in zip(patches, proof_runs, strict=True):
        fixes[name] = proven_fix(name, patch, verdict.judge(run))
    return fixes


def fit_wrapper(name: str, clean: Sequence[str], root: str) -> Patch:
    """The wrapper ``name`` rewritten into the closest pattern among ``clean``."""
    try:
        decorator = load_wrapper(name)
    except PooldoctorError as exc:  # the preflight loaded it: only a wrapper that changed
        raise CannotPatch(str(exc)) from None
    return fit(locate(decorator, root), clean, root)


def wire(name: str, patch: Patch) -> dict[str, Any]:
    """What the subject process needs to load the patched wrapper
    (:func:`pooldoctor.core.fixes.load.load_patched`)."""
    return {
        "wrapper": name,
        "module": patch.source.module,
        "function": patch.source.function,
        "source": patch.function,
        "imports": list(patch.imports),
        "filename": str(patch.source.path),
        "first_line": patch.first_line,
    }


def proven_fix(name: str, patch: Patch, proof: SubjectResult) -> Fix:
    return Fix(
        subject=patch.pattern,
        code=patch.function,
        applied_to=name,
        measured=proof.verdict,
        detail=proof.summary,
        diff=unified(patch),
        timeline=proof.timeline,
    )


def attach(results: Sequence[SubjectResult], fixes: dict[str, Fix]) -> tuple[SubjectResult, ...]:
    """``results`` with each wrapper's and URL's fix set."""
    return tuple(
        dataclasses.replace(r, fix=fixes[r.subject])
        if r.kind in ("wrapper", "url") and r.subject in fixes
        else r
        for r in results
    )


SETTINGS_FIX = "conn-max-age-0"
MeasureWith = Callable[[list[Subject], dict[str, Any]], list[SubjectRun]]
"""Runs subjects as the first round did, with these ``DATABASES`` entries changed."""


def prove_url_fixes(
    subjects: Sequence[Subject],
    results: Sequence[SubjectResult],
    alias: str,
    pooled: bool,
    conn_max_age: Any,
    measure: MeasureWith,
) -> dict[str, Fix]:
    """Each project URL that leaks or pins with persistent connections and no pool, requested
    once more with ``CONN_MAX_AGE = 0`` (the request's connection is then closed at
    ``request_finished``, on the request's own thread): the fix, measured, by URL name."""
    if pooled or conn_max_age == 0:
        return {}
    bad = {r.subject for r in results if r.kind == "url" and r.verdict in NEEDS_FIX}
    originals = [s for s in subjects if s.kind == "url" and s.name in bad]
    if not originals:
        return {}
    proofs = [dataclasses.replace(s, name=f"{s.name}{PROOF_SUFFIX}") for s in originals]
    code = f'DATABASES["{alias}"]["CONN_MAX_AGE"] = 0  # was {conn_max_age!r}'
    runs = measure(proofs, {"CONN_MAX_AGE": 0})
    fixes: dict[str, Fix] = {}
    for subject, run in zip(originals, runs, strict=True):
        proof = verdict.judge(run)
        fixes[subject.name] = Fix(
            subject=SETTINGS_FIX,
            code=code,
            applied_to=subject.name,
            measured=proof.verdict,
            detail=proof.summary,
            timeline=proof.timeline,
        )
    return fixes
