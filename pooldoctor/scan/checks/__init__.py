"""The scan's checks: one module each, registering itself with a stable code.

A check is a function from one source file (and the project-wide facts) to hits. Each module's
docstring names the failure the check prevents and cites the Django/Celery/asgiref code or
ticket; ``tests/scan/checks/test_<module>.py`` holds its flagged and not-flagged examples.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable

from pooldoctor.core.model import Severity
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile


@dataclasses.dataclass(frozen=True)
class Hit:
    line: int
    column: int
    message: str


CheckFunction = Callable[[SourceFile, Facts], Iterable[Hit]]


@dataclasses.dataclass(frozen=True)
class Check:
    code: str
    name: str
    severity: Severity
    doc: str
    fix: str
    run: CheckFunction

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
        _CHECKS[code] = Check(code, name, severity, module.__doc__ or name, fix, run)
        return run

    return decorator


def all_checks() -> list[Check]:
    """Every check, ordered by code."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return sorted(_CHECKS.values(), key=lambda c: c.code)
