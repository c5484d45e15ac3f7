"""The scan's checks: one module each, registering itself with a stable code.

A check is a function from one source file (and the project-wide facts) to hits. Each module's
docstring names the failure the check prevents and cites the Django/Celery/asgiref code or
ticket; ``tests/scan/checks/test_<module>.py`` holds its flagged and not-flagged examples.

A module declares, above its check function, what a file's text must contain for the check to
find anything in it: ``NEEDS = ("ThreadSensitiveContext",)``, any one of its entries: a string,
a compiled pattern (searched for), or a tuple of strings that must all be there
(``NEEDS = (("pool", "OPTIONS"),)``). The scan never parses, nor hands to the check, a file
whose text has none of them. A module that declares nothing is run on every file.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Sequence

from pooldoctor.core.model import Severity
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile


@dataclasses.dataclass(frozen=True)
class Hit:
    line: int
    column: int
    message: str


CheckFunction = Callable[[SourceFile, Facts], Iterable[Hit]]
Need = str | re.Pattern[str] | tuple[str, ...]
"""A substring of the file's text, a pattern searched for in it, or substrings all in it."""


@dataclasses.dataclass(frozen=True)
class Check:
    code: str
    name: str
    severity: Severity
    doc: str
    fix: str
    run: CheckFunction
    needs: tuple[Need, ...] | None = None
    """The module's ``NEEDS``: a file can hold a finding only when its text has one of them. None
    when the module declares nothing: every file is handed to the check."""

    def wants(self, text: str) -> bool:
        """Whether a file with this text may hold a finding (False: skip it, unparsed)."""
        return self.needs is None or mentions(text, self.needs)

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0].rstrip(".")


_CHECKS: dict[str, Check] = {}


def register(
    module_name: str, code: str, severity: Severity, fix: str
) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check named after its module."""

    def decorator(run: CheckFunction) -> CheckFunction:
        module = importlib.import_module(module_name)
        name = module_name.rsplit(".", 1)[1].replace("_", "-")
        if code in _CHECKS and _CHECKS[code].name != name:
            raise RuntimeError(f"check code {code} registered twice")
        needs = getattr(module, "NEEDS", None)
        doc = module.__doc__ or name
        _CHECKS[code] = Check(code, name, severity, doc, fix, run, _needs(needs, module_name))
        return run

    return decorator


@dataclasses.dataclass(frozen=True)
class Prefilter:
    """What the selected checks need, each string looked for once per file however many checks
    need it: the scan asks it which checks want a file before the file is parsed."""

    needs: tuple[tuple[frozenset[str], ...] | None, ...]
    """Each check's needs, each as the set of words it needs all of; None: every file."""
    patterns: tuple[tuple[re.Pattern[str], ...], ...]
    """Each check's other patterns, searched for when none of its words are there."""
    strings: tuple[str, ...]
    folded: tuple[str, ...]
    """Words needed in any case (``re.compile("celery", re.IGNORECASE)``): looked for in the
    lower-cased text, which is faster than the pattern; present as ``"\\0" + word``."""

    @classmethod
    def of(cls, checks: Sequence[Check]) -> Prefilter:
        needs = tuple(None if c.needs is None else _sets(c.needs) for c in checks)
        patterns = tuple(
            tuple(n for n in c.needs or () if isinstance(n, re.Pattern) and not _folded(n))
            for c in checks
        )
        words = {w for each in needs for s in each or () for w in s}
        plain = sorted(w for w in words if not w.startswith("\0"))
        folded = sorted(w[1:] for w in words if w.startswith("\0"))
        return cls(needs, patterns, tuple(plain), tuple(folded))

    def wanting(self, text: str) -> tuple[int, ...]:
        """The places (in the checks it was made of) of the checks that want this text."""
        present = {s for s in self.strings if s in text}
        if self.folded:
            lowered = text.lower()
            present.update("\0" + f for f in self.folded if f in lowered)
        return tuple(
            i
            for i, (needs, patterns) in enumerate(zip(self.needs, self.patterns, strict=True))
            if needs is None
            or any(words <= present for words in needs)
            or any(p.search(text) for p in patterns)
        )


def _sets(needs: tuple[Need, ...]) -> tuple[frozenset[str], ...]:
    found: list[frozenset[str]] = []
    for need in needs:
        if isinstance(need, str):
            found.append(frozenset({need}))
        elif isinstance(need, tuple):
            found.append(frozenset(need))
        elif folded := _folded(need):
            found.append(frozenset({"\0" + folded}))
    return tuple(found)


_WORD = re.compile(r"\w+")


def _folded(pattern: re.Pattern[str]) -> str | None:
    """The lower-cased word a case-insensitive pattern of one word looks for, else None."""
    if pattern.flags & re.IGNORECASE and _WORD.fullmatch(pattern.pattern):
        return pattern.pattern.lower()
    return None


def mentions(text: str, needs: Iterable[Need]) -> bool:
    """Whether ``text`` has any of ``needs``."""
    return any(_has(text, need) for need in needs)


def _has(text: str, need: Need) -> bool:
    if isinstance(need, str):
        return need in text
    if isinstance(need, tuple):
        return all(part in text for part in need)
    return need.search(text) is not None


def _needs(declared: object, module_name: str) -> tuple[Need, ...] | None:
    if declared is None:
        return None
    if not isinstance(declared, tuple) or not all(_is_need(n) for n in declared):
        raise TypeError(f"{module_name}.NEEDS: a tuple of strings, patterns or tuples of strings")
    return declared


def _is_need(need: object) -> bool:
    if isinstance(need, tuple):
        return bool(need) and all(isinstance(part, str) for part in need)
    return isinstance(need, str | re.Pattern)


def all_checks() -> list[Check]:
    """Every check, ordered by code."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return sorted(_CHECKS.values(), key=lambda c: c.code)
