"""How fast ``pooldoctor scan`` reads a project, next to plain ``ast.parse`` and ruff.

On one tree (``--tree``, e.g. Django's own source, or a generated Django/Celery-shaped one of
``--files`` Python files: apps with models, views, serializers, admin, tests, migrations and
Celery tasks, a share of which use async ORM code, plus settings, requirements and a Procfile),
each command runs in a fresh process, start-up included, and is timed ``--repeat`` times:

- ``pooldoctor scan`` (one worker process per CPU on a tree this size);
- ``pooldoctor scan`` with the tree's ``__pycache__`` left out (a fresh checkout: every module
  no check needs is still checked to parse, without building its tree);
- ``ast.parse`` of every ``.py`` file, each read once, in one process: the floor a scan that
  parses everything cannot go under;
- ``ruff check --select E,F,B --no-cache``, when ruff is installed.

The peak resident memory of each (its largest process) is measured with ``getrusage``.
pooldoctor's own modules are byte-compiled first, as pip leaves them.

    python benchmarks/scan_speed.py --tree .venv/lib/python3.12/site-packages/django
    python benchmarks/scan_speed.py --files 2000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pooldoctor.commands.scan import run_scan, select_checks

PARSE_ALL = """\
import ast, os, sys
for top, dirs, files in os.walk(sys.argv[1]):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
        if name.endswith(".py"):
            with open(os.path.join(top, name), "rb") as file:
                ast.parse(file.read())
"""
MEASURE = """\
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False)
elapsed = time.perf_counter() - started
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

MODULES = {
    "models.py": """\
        from django.db import models

        class Item{n}(models.Model):
            name = models.CharField(max_length=100)
            created = models.DateTimeField(auto_now_add=True)

            class Meta:
                ordering = ["-created"]

            def __str__(self):
                return self.name
    """,
    "views.py": """\
        from django.http import JsonResponse
        from .models import Item{n}

        async def detail(request, pk):
            item = await Item{n}.objects.aget(pk=pk)
            return JsonResponse({{"name": item.name}})

        def listing(request):
            return JsonResponse({{"items": list(Item{n}.objects.values_list("name", flat=True))}})
    """,
    "tasks.py": """\
        import asyncio
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from .models import Item{n}

        async def refresh(pk):
            item = await Item{n}.objects.aget(pk=pk)
            await item.asave()

        @shared_task
        def refresh_task(pk):
            async_to_sync(refresh)(pk)

        @shared_task
        def refresh_fast(pk):
            asyncio.run(refresh(pk))
    """,
    "admin.py": """\
        from django.contrib import admin
        from .models import Item{n}

        admin.site.register(Item{n})
    """,
    "tests.py": """\
        from django.test import TestCase
        from .models import Item{n}

        class Item{n}Tests(TestCase):
            def test_str(self):
                self.assertEqual(str(Item{n}(name="x")), "x")
    """,
    "serializers.py": """\
        def serialize(item):
            return {{"id": item.pk, "name": item.name, "created": item.created.isoformat()}}
    """,
    "migrations/0001_initial.py": """\
        from django.db import migrations, models

        class Migration(migrations.Migration):
            initial = True
            dependencies = []
            operations = [
                migrations.CreateModel(
                    name="Item{n}",
                    fields=[("id", models.BigAutoField(primary_key=True)),
                            ("name", models.CharField(max_length=100))],
                ),
            ]
    """,
    "migrations/__init__.py": "",
    "__init__.py": "",
}
SETTINGS = """\
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"pool": {"max_size": 10, "timeout": 5}},
        }
    }
    CONN_HEALTH_CHECKS = True
"""


def generate(root: Path, files: int) -> int:
    (root / "project").mkdir(parents=True)
    (root / "project" / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (root / "requirements.txt").write_text("django==6.1.3\ncelery==5.7.0\n")
    (root / "Procfile").write_text("worker: celery -A project worker -c 4\n")
    written, app = 1, 0
    while written < files:
        for name, template in MODULES.items():
            path = root / f"app{app}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(template.format(n=app)))
            written += 1
            if written >= files:
                break
        app += 1
    return written


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak resident MB of ``command`` (its largest process)."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds, kilobytes = proc.stdout.split()
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes there, KB elsewhere
    return float(seconds), int(kilobytes) / scale


def ruff() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.exists() else shutil.which("ruff")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="a real tree to scan (else one is generated)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pooldoctor-scan-bench-"))
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        if args.tree:
            tree = args.tree.resolve()
        else:
            tree = work / "tree"
            generate(tree, args.files)
        fresh = work / "fresh"
        shutil.copytree(tree, fresh, ignore=shutil.ignore_patterns("__pycache__"))
        python = sorted(p for p in tree.rglob("*.py") if "__pycache__" not in p.parts)
        lines = sum(len(p.read_bytes().splitlines()) for p in python)
        cached = sum(1 for p in tree.rglob("*.pyc"))
        scan = [sys.executable, "-m", "pooldoctor", "scan", "--format", "json", "."]
        subprocess.run(scan, cwd=fresh, env=env, capture_output=True, check=False)  # compile
        commands = {
            "pooldoctor scan": (scan, tree),
            "pooldoctor scan, no __pycache__": (scan, fresh),
            "ast.parse every file": ([sys.executable, "-c", PARSE_ALL, "."], tree),
        }
        found = ruff()
        if found:
            ruff_args = ["check", "--select", "E,F,B", "--no-cache", "--exit-zero", "."]
            commands["ruff check --select E,F,B"] = ([found, *ruff_args], tree)
        times: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, float] = dict.fromkeys(commands, 0.0)
        for _ in range(args.repeat):
            for name, (command, cwd) in commands.items():
                seconds, peak = timed(command, cwd, env)
                times[name].append(seconds)
                peaks[name] = max(peaks[name], peak)
        inproc, serial = [], []
        checks = select_checks()
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = run_scan(tree, [], checks)
            inproc.append(time.perf_counter() - started)
            started = time.perf_counter()
            run_scan(tree, [], checks, jobs=1)
            serial.append(time.perf_counter() - started)
        print(f"tree       {tree if args.tree else 'generated'}: {len(python)} Python files "
              f"({lines} lines), {cached} of them byte-compiled in __pycache__")  # fmt: skip
        print(f"machine    {platform.platform()}, {os.cpu_count()} CPU cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        print(f"findings   {len(result.findings)} in {result.files_scanned} files")
        floor = statistics.median(times["ast.parse every file"])
        print(f"{'command (fresh process each)':34} {'median':>8} {'min':>8} {'vs parse':>9} "
              f"{'peak RSS':>9}")  # fmt: skip
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:34} {median:7.3f}s {min(values):7.3f}s {median / floor:8.0%} "
                  f"{peaks[name]:6.0f} MB")  # fmt: skip
        for label, values in (("run_scan in-process", inproc), ("run_scan, one process", serial)):
            median = statistics.median(values)
            print(f"{label:34} {median:7.3f}s {min(values):7.3f}s {median / floor:8.0%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
