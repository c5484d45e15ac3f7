"""How fast ``pooldoctor scan`` reads a large project: files per second.

Generates a Django/Celery-shaped tree (apps with models, views, serializers, admin, tests,
migrations and Celery tasks, a share of which use async ORM code, plus settings, requirements and a
Procfile) of ``--files`` Python files in a temporary directory, then times the real CLI
(``python -m pooldoctor scan``, start-up included) and the scan itself in-process.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pooldoctor-scan-bench-"))
    try:
        count = generate(root, args.files)
        lines = sum(len(p.read_text().splitlines()) for p in root.rglob("*.py"))
        cli, inproc, findings = [], [], 0
        checks = select_checks()
        for _ in range(args.repeat):
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "pooldoctor", "scan", "--format", "json"],
                cwd=root, capture_output=True, text=True, check=False,
            )  # fmt: skip
            cli.append(time.perf_counter() - started)
            assert proc.returncode in (0, 1), proc.stderr
            started = time.perf_counter()
            result = run_scan(root, [], checks)
            inproc.append(time.perf_counter() - started)
            findings = len(result.findings)
        print(f"tree       {count} Python files ({lines} lines) + settings, requirements, Procfile")
        print(f"machine    {platform.platform()}, {os.cpu_count()} CPU cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        print(f"findings   {findings} (the tree's asyncio.run tasks are meant to be found)")
        for label, times in (("CLI (start-up included)", cli), ("scan in-process", inproc)):
            median = statistics.median(times)
            print(f"{label:24} median {median:.3f} s  min {min(times):.3f} s  "
                  f"max {max(times):.3f} s  -> {count / median:,.0f} files/s")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
