"""Which modules are the project's live settings, and what their ``DATABASES`` are worth.

Django reads one settings module, the one ``DJANGO_SETTINGS_MODULE`` names: ``manage.py``,
``wsgi.py``, ``asgi.py`` and ``celery.py`` set it with ``os.environ.setdefault``, deployment files
set it in the environment (a Dockerfile's ``ENV``, compose's ``environment:``, a Kubernetes
``env:`` entry, a Procfile's ``--settings``). Those modules, and what they import, are the live
configuration; a dict in a test or a migration that looks like ``DATABASES`` is data. Test
runners' own settings (``pytest.ini``, ``conftest.py``, ``settings/test.py``) are not where
production runs and are not read as the project's settings.

When nothing names the settings (a scan of a sub-folder, a library), the modules that look like
settings (``settings.py``, a ``settings`` package, a module outside tests that assigns
``DATABASES``) stand in, and the report says the settings were guessed.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

from pooldoctor.scan.databases import AliasConfig, PoolState, database_configs
from pooldoctor.scan.values import Place

# os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings"), os.environ[...] = "...",
# {"DJANGO_SETTINGS_MODULE": "..."}: the value is a string literal.
_PYTHON_REFERENCE = re.compile(
    r"""DJANGO_SETTINGS_MODULE["'\]]*\s*[,:=]\s*["']([A-Za-z_][\w.]*)["']"""
)
# ENV DJANGO_SETTINGS_MODULE=mysite.settings.prod, - DJANGO_SETTINGS_MODULE=..., compose's
# "DJANGO_SETTINGS_MODULE: mysite.settings.prod", export DJANGO_SETTINGS_MODULE="..."
_ENV_REFERENCE = re.compile(r"""DJANGO_SETTINGS_MODULE["']?\s*[=:]\s*["']?([A-Za-z_][\w.]*)""")
# A Kubernetes env entry: "- name: DJANGO_SETTINGS_MODULE" and "value: mysite.settings.prod".
_K8S_REFERENCE = re.compile(
    r"""name:\s*["']?DJANGO_SETTINGS_MODULE["']?\s*\n\s*value:\s*["']?([A-Za-z_][\w.]*)"""
)
# manage.py migrate --settings=mysite.settings.prod, celery ... --settings mysite.settings.prod
_OPTION_REFERENCE = re.compile(r"""(?<![\w-])--settings[=\s]+["']?([A-Za-z_][\w.]*)""")
# Where test runners are configured: their settings are the tests', not production's.
_TEST_CONFIG = re.compile(r"^(pytest\.ini|tox\.ini|setup\.cfg|pyproject\.toml|conftest\.py)$")
_TEST_FILE = re.compile(r"^(test_.*|.*_tests?|tests?|conftest)\.py$")
_TEST_DIRS = frozenset({"tests", "test", "testing", "testcases"})
_SETTINGS_LIKE = re.compile(r"(?:^|\.)settings(?:\.|$)|(?:^|\.)\w*settings$")


class Role(enum.StrEnum):
    """What a file is to the project."""

    SOURCE = "source"
    TEST = "test"
    MIGRATION = "migration"


def role(relative: str) -> Role:
    """Tests (``tests/``, ``test_*.py``, ``*_tests.py``, ``tests.py``, ``conftest.py``) and
    migrations (``migrations/``) by their place; everything else is source."""
    path = PurePosixPath(relative)
    folders = set(path.parts[:-1])
    if "migrations" in folders:
        return Role.MIGRATION
    if folders & _TEST_DIRS or _TEST_FILE.match(path.name):
        return Role.TEST
    return Role.SOURCE


@dataclasses.dataclass(frozen=True, order=True)
class Reference:
    """A place that names the settings module Django runs with."""

    module: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def references(relative: str, text: str, is_python: bool) -> tuple[Reference, ...]:
    """Where this file names ``DJANGO_SETTINGS_MODULE``'s value (none for tests and the test
    runners' configuration)."""
    name = PurePosixPath(relative).name
    if (
        ("DJANGO_SETTINGS_MODULE" not in text and "--settings" not in text)
        or _TEST_CONFIG.match(name)
        or role(relative) is not Role.SOURCE
    ):
        return ()
    patterns = [_PYTHON_REFERENCE, _OPTION_REFERENCE]
    if not is_python:
        patterns += [_ENV_REFERENCE, _K8S_REFERENCE]
    found: dict[tuple[str, int], Reference] = {}
    for pattern in patterns:
        for match in pattern.finditer(text):
            module = match[1].rstrip(".")
            if is_python and pattern is _OPTION_REFERENCE and "." not in module:
                continue  # argparse's add_argument("--settings", ...), not a module
            line = text.count("\n", 0, match.start(1)) + 1
            found.setdefault((module, line), Reference(module, relative, line))
    return tuple(sorted(found.values()))


class ProjectModules:
    """The scanned Python files by dotted module name, parsed when the settings evaluation asks
    for one (a handful of modules: the settings and what they import)."""

    def __init__(self, texts: Mapping[str, Callable[[], str]]) -> None:
        """``texts``: each Python file's path relative to the scanned root, and how to get its
        text."""
        self._texts = texts
        self._by_name: dict[str, str] = {}
        for relative in texts:
            if name := _name(relative):
                self._by_name.setdefault(name, relative)
        self._trees: dict[str, tuple[str, ast.Module] | None] = {}

    def resolve(self, name: str) -> str | None:
        """The file of module ``name``: by its path from the scanned root, else the one file
        whose path ends with it (``src/mysite/settings.py`` for ``mysite.settings``)."""
        if name in self._by_name:
            return self._by_name[name]
        suffix = "." + name
        matches = [r for n, r in self._by_name.items() if n.endswith(suffix)]
        return matches[0] if len(matches) == 1 else None

    def module(self, name: str) -> tuple[str, ast.Module] | None:
        if name not in self._trees:
            relative = self.resolve(name)
            tree = None
            if relative is not None:
                try:
                    tree = ast.parse(self._texts[relative](), filename=relative)
                except (SyntaxError, ValueError, MemoryError, RecursionError):
                    tree = None
            self._trees[name] = (relative, tree) if relative and tree else None
        return self._trees[name]

    @property
    def names(self) -> Iterable[str]:
        return self._by_name


@dataclasses.dataclass(frozen=True)
class ProjectSettings:
    """The live settings modules and the database aliases they configure."""

    modules: tuple[str, ...] = ()
    """The settings modules evaluated, in name order."""
    references: tuple[Reference, ...] = ()
    """Where ``DJANGO_SETTINGS_MODULE`` names them; empty when they were guessed."""
    databases: tuple[AliasConfig, ...] = ()

    @property
    def guessed(self) -> bool:
        return bool(self.modules) and not self.references

    @property
    def pools(self) -> tuple[AliasConfig, ...]:
        return tuple(a for a in self.databases if a.pool is PoolState.ON)

    @property
    def unknown_pools(self) -> tuple[AliasConfig, ...]:
        return tuple(a for a in self.databases if a.pool is PoolState.UNKNOWN)

    @property
    def files(self) -> frozenset[str]:
        """The files that hold any of the settings' places."""
        places = [p for a in self.databases for p in (a.place, a.pool_place) if p is not None]
        return frozenset(p.file for p in places)


def read_settings(
    found: Iterable[Reference], defines_databases: Iterable[str], modules: ProjectModules
) -> ProjectSettings:
    """Evaluate the live settings: the modules ``found`` names that are in the project, else
    the settings-like modules (``defines_databases``: the files outside tests and migrations
    whose text assigns ``DATABASES``)."""
    named = sorted(set(found))
    live = sorted({r.module for r in named if modules.resolve(r.module) is not None})
    used = tuple(r for r in named if r.module in live)
    if not live:
        used = ()
        candidates = {_name(relative) for relative in defines_databases}
        candidates |= {n for n in modules.names if _SETTINGS_LIKE.search(n)}
        live = sorted(
            n
            for n in candidates
            if n and role(modules.resolve(n) or "") is Role.SOURCE and not _test_settings(n)
        )
    aliases: dict[tuple[str, Place | None], AliasConfig] = {}
    for module in live:
        for alias in database_configs(module, modules):
            # A base module star-imported by two settings modules gives the same alias twice.
            aliases.setdefault((alias.alias, alias.pool_place or alias.place), alias)
    return ProjectSettings(tuple(live), used, tuple(aliases.values()))


def _name(relative: str) -> str:
    """``mysite/settings/__init__.py`` → ``mysite.settings``; ``""`` for a path that is not a
    dotted module name (``my-app/settings.py``)."""
    parts = list(PurePosixPath(relative).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) if all(p.isidentifier() for p in parts) else ""


def _test_settings(module: str) -> bool:
    """``mysite.settings.test``, ``settings_test``, ``test_settings``: the test runner's."""
    last = module.rsplit(".", 1)[-1]
    return bool(re.search(r"(?:^|_)tests?(?:_|$)|(?:^|_)testing(?:_|$)|^ci$", last))
