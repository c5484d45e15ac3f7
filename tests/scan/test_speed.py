"""``pooldoctor scan`` at linter speed, with nothing lost: files no check needs are skipped before
they are parsed (each check's ``NEEDS``), the rest are parsed in worker processes, and neither
changes a byte of the report.

The reference is the scan as it was: every file parsed, the facts gathered, every check run on
every file, in one process.
"""

from __future__ import annotations

import ast
import json
import os
import py_compile
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, PROJECTS, pooldoctor

from pooldoctor.commands.scan import code_point_column, run_scan
from pooldoctor.reporters.scan import ScanFormat, render
from pooldoctor.scan import facts as facts_module
from pooldoctor.scan.checks import Check, all_checks
from pooldoctor.scan.deployment import preloads_in_python, servers_in_python
from pooldoctor.scan.facts import Location, file_facts, gather
from pooldoctor.scan.model import ScanFinding, ScanResult, SkippedFile, SkipReason
from pooldoctor.scan.source import discover

CHECK_TESTS = Path(__file__).resolve().parent / "checks"
DEPLOYMENT = {
    # A pool, gunicorn --preload, Celery on threads and an old Celery pinned: facts that switch
    # on the checks that look at the project as a whole.
    "project/settings.py": """\
        DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 60,
                                 "OPTIONS": {"pool": {"max_size": 4}}}}
    """,
    "Procfile": (
        "web: gunicorn project.wsgi --preload\nworker: celery -A project worker -P threads\n"
    ),
    "requirements.txt": "celery==5.5.3\nuvicorn==0.30\n",
}


def reference_scan(root: Path, checks: list[Check]) -> ScanResult:
    """Every file parsed, every check on every file (no NEEDS), one process."""
    discovery = discover(root, [root])
    facts = gather(discovery.files)
    findings = set()
    for source in discovery.files:
        for check in checks:
            for hit in check.run(source, facts):
                if not source.suppressed(hit.line, check.code):
                    column = code_point_column(source, hit.line, hit.column)
                    findings.add(
                        ScanFinding(
                            source.relative, hit.line, column, check.code, check.severity,
                            hit.message, check.fix,
                        )
                    )  # fmt: skip
    return ScanResult(
        root=str(root),
        findings=tuple(sorted(findings)),
        files_scanned=len(discovery.files),
        skipped=discovery.skipped,
        scanned=(str(root),),
    )


def snippets() -> dict[str, str]:
    """The Python sources the checks' own tests scan (their module-level string constants and
    the literal files they write), each under a name of its own."""
    found: dict[str, str] = {}
    for test in sorted(CHECK_TESTS.glob("test_*.py")):
        tree = ast.parse(test.read_text())
        strings = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        for number, text in enumerate(strings):
            code = textwrap.dedent(text)
            if "\n" not in code.strip():
                continue
            try:
                ast.parse(code)
            except SyntaxError:
                continue
            found[f"{test.stem[5:]}_{number}"] = code
    return found


def corpus(root: Path, *, deployment: bool) -> Path:
    """Every snippet as a task module, a view and an app config, in one project."""
    for name, code in snippets().items():
        for module in ("tasks.py", "views.py", "apps.py"):
            path = root / name / module
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
    if deployment:
        for name, text in DEPLOYMENT.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
    return root


def trees(tmp_path: Path) -> list[Path]:
    projects = sorted(p for p in PROJECTS.iterdir() if p.is_dir())
    return [
        *projects,
        FIXTURES / "leaky",
        FIXTURES / "fixed",
        corpus(tmp_path / "with_deployment", deployment=True),
        corpus(tmp_path / "bare", deployment=False),
    ]


def test_the_snippets_are_there() -> None:
    # The corpus is worth something only if it holds the checks' examples.
    assert len(snippets()) > 50


def test_needs_never_hide_a_finding(tmp_path: Path) -> None:
    # GIVEN the fixture projects and every example the checks' tests scan
    checks = all_checks()
    flagged = 0
    for root in trees(tmp_path):
        # WHEN scanned with the NEEDS prefilter, in one process and in two
        expected = reference_scan(root, checks)
        serial = run_scan(root, [], checks, jobs=1)
        parallel = run_scan(root, [], checks, jobs=2)
        # THEN the findings, skipped files and counts are the reference's
        for result in (serial, parallel):
            assert result.findings == expected.findings, root
            assert result.skipped == expected.skipped, root
            assert result.files_scanned == expected.files_scanned, root
        flagged += len(expected.findings)
    assert flagged > 100  # the corpus flags things: the comparison is not of empty reports


@pytest.mark.parametrize("fmt", list(ScanFormat))
def test_parallel_and_serial_reports_are_byte_identical(tmp_path: Path, fmt: ScanFormat) -> None:
    root = corpus(tmp_path, deployment=True)
    (root / "broken.py").write_text("def f(:\n")
    (root / "latin.py").write_bytes(b"# caf\xe9\n")
    checks = all_checks()
    serial = render(run_scan(root, [], checks, jobs=1), fmt, checks)
    parallel = render(run_scan(root, [], checks, jobs=2), fmt, checks)
    assert serial == parallel
    assert "broken.py" in serial and "latin.py" in serial


def test_a_file_no_check_needs_is_not_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN modules in which no check can find anything, one of them broken
    for n in range(20):
        (tmp_path / f"plain{n}.py").write_text(f"def double(x):\n    return x * {n}\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    parsed: list[str] = []
    real_parse = ast.parse

    def counting_parse(source: str, filename: str = "<unknown>", *args: object, **kw: object):  # type: ignore[no-untyped-def]
        parsed.append(filename)
        return real_parse(source, filename, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ast, "parse", counting_parse)
    # WHEN scanned
    result = run_scan(tmp_path, [], all_checks(), jobs=1)
    # THEN no syntax tree was built but for the broken file (to say where it breaks)
    assert parsed == ["broken.py"]
    assert result.files_scanned == 20
    assert result.skipped == (
        SkippedFile("broken.py", SkipReason.UNPARSEABLE, "SyntaxError at line 1: invalid syntax"),
    )


def test_a_module_python_compiled_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a module with its bytecode cached by Python, and a broken one whose cache is stale
    good, broken = tmp_path / "good.py", tmp_path / "broken.py"
    good.write_text("x = 1\n")
    broken.write_text("y = 2\n")
    py_compile.compile(str(good), doraise=True)
    py_compile.compile(str(broken), doraise=True)
    broken.write_text("def f(:\n")
    os.utime(broken, (1, 1))  # another modification time than the cache records
    checked: list[str] = []
    real_symtable = __import__("symtable").symtable

    def counting_symtable(text: str, name: str, mode: str):  # type: ignore[no-untyped-def]
        checked.append(name)
        return real_symtable(text, name, mode)

    monkeypatch.setattr("pooldoctor.scan.files.symtable.symtable", counting_symtable)
    # WHEN scanned
    result = run_scan(tmp_path, [], all_checks(), jobs=1)
    # THEN the compiled module is taken as parsing; the stale cache proves nothing
    assert checked == ["broken.py"]
    assert [s.path for s in result.skipped] == ["broken.py"]
    assert result.files_scanned == 1


def test_scan_imports_neither_django_nor_celery(tmp_path: Path) -> None:
    corpus(tmp_path, deployment=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pooldoctor", "scan", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["findings"]
    imported = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "pooldoctor" in imported
    assert not imported & {"django", "celery", "kombu", "billiard", "gunicorn", "uvicorn"}


MODULE = """\
import asyncio
from celery import shared_task
from django.db import models


class Item{n}(models.Model):
    name = models.CharField(max_length=100)
    {fields}


@shared_task
def refresh_{n}(pk):
    asyncio.run(Item{n}.objects.aget(pk=pk))


def helper_{n}(values):
    return [{body}]
"""


def generate(root: Path, files: int) -> None:
    fields = "\n    ".join(f"field{i} = models.IntegerField(default={i})" for i in range(60))
    body = ", ".join(f"v * {i} + {i}" for i in range(300))
    for n in range(files):
        path = root / f"app{n % 40}" / f"module{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(MODULE.format(n=n, fields=fields, body=body))


def peak_rss_mb(root: Path) -> float:
    """The largest resident set of ``pooldoctor scan`` and its worker processes, in MB."""
    script = (
        "import resource, subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'pooldoctor', 'scan', '--format', 'json'],"
        " stdout=subprocess.DEVNULL, check=False)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
        check=True,
    )  # fmt: skip
    kilobytes = int(proc.stdout.split()[-1])
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 1024 / 1024


@pytest.mark.skipif(sys.platform == "win32", reason="resource is POSIX")
def test_peak_memory_does_not_grow_with_the_tree(tmp_path: Path) -> None:
    # GIVEN trees of 60 and 600 modules of about 10 kB each, all of which a check reads
    small, large = tmp_path / "small", tmp_path / "large"
    generate(small, 60)
    generate(large, 600)
    assert resource.RUSAGE_CHILDREN  # POSIX
    # WHEN each is scanned
    small_mb, large_mb = peak_rss_mb(small), peak_rss_mb(large)
    # THEN no syntax tree outlives its file: ten times the files, about the same peak (the
    # whole tree's syntax trees would take some 300 MB more), and well under 200 MB
    assert large_mb < small_mb + 40, (small_mb, large_mb)
    assert large_mb < 200, large_mb


def test_the_cli_report_is_the_serial_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a tree large enough for the CLI to start worker processes
    generate(tmp_path, 300)
    # WHEN the CLI scans it, and the scan runs in one process
    proc = pooldoctor("scan", "--format", "json", cwd=tmp_path, timeout=300)
    monkeypatch.chdir(tmp_path)
    checks = all_checks()
    serial = render(run_scan(Path.cwd(), [], checks, jobs=1), ScanFormat.JSON, checks)
    # THEN the reports are the same, byte for byte
    assert json.loads(proc.stdout)["findings"]
    assert proc.stdout == serial


def test_the_words_facts_look_for_never_hide_a_fact(tmp_path: Path) -> None:
    # Each fact is asked of the text before the module is parsed; asked of every tree instead,
    # each gives the same answer.
    checked = 0
    for root in trees(tmp_path):
        for source in discover(root, [root]).files:
            if not source.is_python or source.tree is None:
                continue
            tree, relative = source.tree, source.relative
            share = file_facts(source)
            assert share.uses_celery == facts_module._imports(tree, "celery"), relative
            workers = facts_module._handler_calls(tree, {"worker_process_init"}, {"close_pool"})
            assert share.discards_pool_in_child == workers, relative
            assert share.gunicorn_fork_hook == facts_module._gunicorn_hook(tree), relative
            assert share.hook_calls == facts_module._gunicorn_hook_calls(tree), relative
            preloads = [Location(relative, line) for line, _ in preloads_in_python(tree)]
            assert share.preloads == tuple(preloads), relative
            assert share.servers == tuple(servers_in_python(relative, tree)), relative
            checked += 1
    assert checked > 300
