"""Files to scan: discovery, lazy parsing, and inline suppressions.

Python files are parsed with :mod:`ast` only when a check asks for the tree; nothing is imported.
Other files (requirements, lock files, Procfiles, Dockerfiles, shell scripts, compose files,
pyproject.toml) are read as text for the project-wide facts.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

SKIP_DIRS = {
    ".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "env", "node_modules", "__pycache__",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist", "site-packages", ".eggs",
}  # fmt: skip
TEXT_NAMES = re.compile(
    r"^(requirements.*\.(txt|in)|constraints.*\.txt|pyproject\.toml|setup\.cfg|Pipfile(\.lock)?|"
    r"poetry\.lock|uv\.lock|Procfile.*|Dockerfile.*|.*\.dockerfile|docker-compose.*\.ya?ml|"
    r"compose.*\.ya?ml|.*\.sh|Makefile|.*\.service|supervisord?.*\.conf|.*\.ini)$"
)
SUPPRESS = re.compile(r"#\s*pooldoctor:\s*ignore(?:\[(?P<codes>[A-Z0-9, ]+)\])?")


class SourceFile:
    """One file of the project, read once."""

    def __init__(self, path: Path, relative: str) -> None:
        self.path = path
        self.relative = relative
        self.text = path.read_text(encoding="utf-8", errors="replace")
        self.is_python = path.suffix == ".py"

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @functools.cached_property
    def tree(self) -> ast.Module | None:
        """The module's AST, or None when it does not parse (reported by nobody: not our job)."""
        if not self.is_python:
            return None
        try:
            return ast.parse(self.text, filename=self.relative)
        except (SyntaxError, ValueError):
            return None

    @functools.cached_property
    def module_name(self) -> str:
        """The dotted module name of the path: ``mysite/tasks.py`` → ``mysite.tasks``."""
        parts = list(Path(self.relative).with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    def suppressed(self, line: int, code: str) -> bool:
        if not 1 <= line <= len(self.lines):
            return False
        match = SUPPRESS.search(self.lines[line - 1])
        if match is None:
            return False
        codes = match["codes"]
        return codes is None or code in {c.strip() for c in codes.split(",")}


def discover(
    root: Path, paths: Iterable[Path], exclude: Iterable[str] = ()
) -> Iterator[SourceFile]:
    """Every Python or known text file under ``paths``, sorted, relative to ``root``."""
    patterns = list(exclude)
    seen: set[Path] = set()
    for start in paths:
        candidates = [start] if start.is_file() else _walk(start)
        for path in sorted(candidates):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            relative = _relative(path, root)
            if any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(path.name, p) for p in patterns):
                continue
            # requirements/base.txt, requirements/production.in (cookiecutter-django, pip-tools)
            pinned = path.parent.name == "requirements" and path.suffix in {".txt", ".in"}
            if path.suffix == ".py" or TEXT_NAMES.match(path.name) or pinned:
                yield SourceFile(path, relative)


def _walk(start: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(start):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            yield Path(directory) / name


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
