"""A 4,000-file project scans in under 200 MB (issue 17): no syntax tree is kept beyond its file
and the project-wide facts that need it.

The project is generated: 200 apps of models, views, tasks, services, admin, urls, forms,
signals, tests and migrations, with ORM calls, ``async def`` views, Celery tasks, settings and
deployment files, varied so that the checks' text prefilters let a realistic share of the files
through to parsing. A known number of them are hazards, so that the scan is seen to have read
them. The peak resident memory is the child's, measured by a dedicated process that runs the
scan and reads ``getrusage(RUSAGE_CHILDREN)`` once it has exited (the test process's own
children would mix in otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

APPS = 200
LIMIT_MB = 200
PD306_EVERY, PD305_EVERY = 20, 25
"""Every 20th app has an ``async def`` Celery task (PD306), every 25th a thread-insensitive
``sync_to_async`` over ORM code in a service module (PD305)."""

MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
# KiB on Linux, bytes on macOS
peak_mb = peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-2000:],
                  "peak_mb": peak_mb, "seconds": elapsed}))
"""

IN_ONE_PROCESS = """
import json, sys
from collections import Counter
from pathlib import Path
from pooldoctor.commands.scan import run_scan, select_checks
result = run_scan(Path(sys.argv[1]), [], select_checks([]), jobs=1)
print(json.dumps({"files": result.files_scanned,
                  "codes": Counter(f.code for f in result.findings)}))
"""


def _module(kind: str, app: str, n: int) -> str:
    """One module of an app, of a real module's size: a few KB, its body varied by ``n``."""
    base = textwrap.dedent(_head(kind, app, n))
    if kind in ("__init__", "migration", "apps", "urls"):
        return base
    model = f"{app.title().replace('_', '')}Item"
    return base + "".join(_helper(kind, model, n, i) for i in range(n % 12 + 4))


def _helper(kind: str, model: str, n: int, i: int) -> str:
    """Ordinary code: queries in models, views, services and selectors; arithmetic elsewhere."""
    if kind in ("models", "views", "services", "selectors", "managers", "signals", "tasks"):
        return f'''

def {kind}_report_{i}(since, limit={i + 10}):
    """Rows of {model} changed since ``since``, for the {kind} report number {i}."""
    rows = (
        {model}.objects.filter(updated__gte=since, quantity__gt={i})
        .order_by("-updated")
        .values("name", "quantity")[:limit]
    )
    total = sum(row["quantity"] for row in rows)
    names = sorted({{row["name"] for row in rows}})
    return {{"total": total, "names": names, "page": {n % 9}}}
'''
    return f'''

def {kind}_step_{i}(values, factor={i + 1}):
    """Scale and clip ``values`` (step {i} of the {kind} pipeline)."""
    result = []
    for index, value in enumerate(values):
        if value is None:
            continue
        scaled = value * factor + index % {n % 5 + 2}
        result.append(min(max(scaled, 0), {1000 + i}))
    return result
'''


def _head(kind: str, app: str, n: int) -> str:
    model = f"{app.title().replace('_', '')}Item"
    if kind == "models":
        return f"""\
            from django.db import models


            class {model}(models.Model):
                name = models.CharField(max_length={40 + n % 60})
                quantity = models.IntegerField(default=0)
                updated = models.DateTimeField(auto_now=True)

                class Meta:
                    ordering = ["-updated"]

                def __str__(self):
                    return self.name
            """
    if kind == "views":
        return f"""\
            from django.http import JsonResponse
            from django.shortcuts import get_object_or_404

            from .models import {model}


            def detail(request, pk):
                item = get_object_or_404({model}, pk=pk)
                return JsonResponse({{"name": item.name, "quantity": item.quantity}})


            async def count(request):
                return JsonResponse({{"count": await {model}.objects.acount()}})
            """
    if kind == "tasks":
        hazard = n % PD306_EVERY == 0
        prefix, wait, purge = ("async ", "await ", "adelete") if hazard else ("", "", "delete")
        return f"""\
            from celery import shared_task
            from django.db import transaction

            from .models import {model}


            @shared_task
            def restock(pk, amount):
                with transaction.atomic():
                    item = {model}.objects.select_for_update().get(pk=pk)
                    item.quantity += amount
                    item.save(update_fields=["quantity"])


            @shared_task
            {prefix}def purge_empty():
                {wait}{model}.objects.filter(quantity=0).{purge}()
            """
    if kind == "services":
        sensitive = "False" if n % PD305_EVERY == 0 else "True"
        return f"""\
            from asgiref.sync import sync_to_async

            from .models import {model}


            def _names():
                return list({model}.objects.values_list("name", flat=True)[:{n % 50 + 10}])


            async def names():
                return await sync_to_async(_names, thread_sensitive={sensitive})()
            """
    if kind == "admin":
        return f"""\
            from django.contrib import admin

            from .models import {model}

            admin.site.register({model})
            """
    if kind == "urls":
        return """\
            from django.urls import path

            from . import views

            urlpatterns = [
                path("<int:pk>/", views.detail),
                path("count/", views.count),
            ]
            """
    if kind == "signals":
        return f"""\
            from django.db.models.signals import post_save
            from django.dispatch import receiver

            from .models import {model}


            @receiver(post_save, sender={model})
            def log_change(sender, instance, created, **kwargs):
                print("saved", instance.pk, created)
            """
    if kind == "migration":
        return f'''\
            from django.db import migrations, models


            class Migration(migrations.Migration):
                initial = True
                dependencies = []
                operations = [
                    migrations.CreateModel(
                        name="{model}",
                        fields=[
                            ("id", models.BigAutoField(primary_key=True)),
                            ("name", models.CharField(max_length={40 + n % 60})),
                        ],
                    ),
                ]
            '''
    # utils, forms, serializers, constants, tests...: plain Python, nothing any check wants
    return f'''\
        """Helpers of {app} ({kind})."""
        import dataclasses
        import decimal


        @dataclasses.dataclass(frozen=True)
        class {kind.title()}Row:
            name: str
            price: decimal.Decimal

            def total(self, quantity: int) -> decimal.Decimal:
                return self.price * quantity * {n % 7 + 1}


        def parse(rows):
            return [{kind.title()}Row(r["name"], decimal.Decimal(r["price"])) for r in rows]
        '''


KINDS = (
    "__init__", "models", "views", "tasks", "services", "admin", "urls", "signals", "forms",
    "serializers", "utils", "constants", "filters", "permissions", "tests", "apps", "selectors",
    "managers", "validators", "exceptions",
)  # fmt: skip


def generate(root: Path) -> int:
    """Write the project; returns how many files it has."""
    files = {
        "manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", '
        '"config.settings")\n',
        "config/__init__.py": "",
        "config/settings.py": """\
            INSTALLED_APPS = []
            DATABASES = {
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "CONN_MAX_AGE": 0,
                    "CONN_HEALTH_CHECKS": True,
                    "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 5}},
                }
            }
            """,
        "config/wsgi.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", '
        '"config.settings")\n',
        "docker-compose.yml": "services:\n  web:\n    command: gunicorn config.wsgi -w 2\n"
        "  worker:\n    command: celery -A config worker --concurrency 4\n",
        "Procfile": "web: gunicorn config.wsgi -w 2\nworker: celery -A config worker -c 4\n",
        "requirements.txt": "Django==5.2.4\ncelery==5.6.0\npsycopg[pool]==3.2.9\n",
    }
    for n in range(APPS):
        app = f"app_{n:03d}"
        for kind in KINDS:
            text = "" if kind == "__init__" else _module(kind, app, n)
            files[f"{app}/{kind}.py"] = text
        files[f"{app}/migrations/__init__.py"] = ""
        files[f"{app}/migrations/0001_initial.py"] = _module("migration", app, n)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return len(files)


def measure(*command: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    measured: dict[str, object] = json.loads(proc.stdout)
    return measured


def test_a_4000_file_project_scans_in_under_200_mb(tmp_path: Path) -> None:
    project = tmp_path / "project"
    assert generate(project) >= 4000
    report = tmp_path / "scan.json"
    expected = Counter({"PD306": APPS // PD306_EVERY, "PD305": APPS // PD305_EVERY})

    # As a user runs it (worker processes when there are enough files): its largest process.
    cli = measure(
        sys.executable, "-m", "pooldoctor", "scan", str(project), "--format", "json",
        "-o", str(report), "--fail-on", "never",
    )  # fmt: skip
    assert cli["rc"] == 0, cli["stderr"]
    findings = json.loads(report.read_text())["findings"]
    assert Counter(f["code"] for f in findings) == expected

    # The whole scan in one process: everything it keeps, at once.
    alone = measure(sys.executable, "-c", IN_ONE_PROCESS, str(project))
    assert alone["rc"] == 0, alone["stderr"]
    assert isinstance(alone["stdout"], str)
    counted = json.loads(alone["stdout"])
    assert counted["codes"] == expected
    assert counted["files"] >= 4000

    print(
        f"\n4000-file scan: CLI peak RSS {cli['peak_mb']:.0f} MB (largest process) in "
        f"{cli['seconds']:.1f} s; in one process {alone['peak_mb']:.0f} MB in "
        f"{alone['seconds']:.1f} s"
    )
    assert isinstance(cli["peak_mb"], float) and cli["peak_mb"] < LIMIT_MB
    assert isinstance(alone["peak_mb"], float) and alone["peak_mb"] < LIMIT_MB
