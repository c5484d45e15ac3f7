"""PD317: a task runner that forks after loading the project, a query while it loads, a pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'
NO_POOL = 'DATABASES = {"default": {"CONN_MAX_AGE": 0}}\n'
READY = """\
    from django.apps import AppConfig


    class ShopConfig(AppConfig):
        name = "shop"

        def ready(self):
            from .models import Currency

            self.default_currency = Currency.objects.get(code="EUR")
"""
PROJECT = {"mysite/settings.py": POOL, "shop/apps.py": READY}


def test_rqworker_in_a_procfile_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    files = PROJECT | {"Procfile": "worker: python manage.py rqworker default high\n"}
    [finding] = scan_source(tmp_path, files, "PD317")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD317",
        "Procfile",
        1,
        26,
    )
    assert finding.message == (
        "manage.py rqworker: RQ's Worker forks a work horse per job after django.setup() ran a "
        "query in the parent (Currency.objects.get(code='EUR') at shop/apps.py:10); django-rq "
        "closes the parent's connection first, which only hands it back to the pool, so the "
        "pool stays open and every child inherits its connections and shares their sockets"
    )
    assert "close_pool()" in finding.fix


@pytest.mark.parametrize(
    ("name", "text", "line", "starts"),
    [
        ("Procfile", "worker: python manage.py qcluster\n", 1, "manage.py qcluster: the django-q"),
        (
            "compose.yml",
            "services:\n  worker:\n    image: shop\n    command: python manage.py rqworker-pool\n",
            4,
            "manage.py rqworker-pool: RQ's Worker",
        ),
        (
            "deploy/huey.service",
            "[Service]\nExecStart=/venv/bin/python manage.py run_huey -w 4 -k process\n",
            2,
            "manage.py run_huey: Huey's process workers are forked",
        ),
        (
            "Procfile",
            "worker: python manage.py rqworker --worker-class rq.worker.Worker\n",
            1,
            "manage.py rqworker: RQ's Worker",
        ),
    ],
    ids=["qcluster", "compose-rqworker-pool", "systemd-run-huey-process", "explicit-rq-worker"],
)
def test_runner_commands_that_fork_are_flagged(
    tmp_path: Path, scan_source: ScanSource, name: str, text: str, line: int, starts: str
) -> None:
    [finding] = scan_source(tmp_path, PROJECT | {name: text}, "PD317")

    assert (finding.file, finding.line) == (name, line)
    assert finding.message.startswith(starts)


@pytest.mark.parametrize(
    ("setting", "line", "column", "starts"),
    [
        ("RQ_QUEUES = {'default': {'URL': 'redis://'}}\n", 2, 1, "RQ_QUEUES: RQ's Worker"),
        ("Q_CLUSTER = {'name': 'shop', 'workers': 4}\n", 2, 1, "Q_CLUSTER: the django-q cluster"),
        (
            "HUEY = {'name': 'shop', 'consumer': {'workers': 4, 'worker_type': 'process'}}\n",
            2,
            52,
            '"worker_type": "process": Huey\'s process workers',
        ),
    ],
    ids=["rq-queues", "q-cluster", "huey-process"],
)
def test_a_setting_is_the_evidence_when_no_command_runs_the_runner(
    tmp_path: Path, scan_source: ScanSource, setting: str, line: int, column: int, starts: str
) -> None:
    files = PROJECT | {"mysite/settings.py": POOL + setting}
    [finding] = scan_source(tmp_path, files, "PD317")

    assert (finding.file, finding.line, finding.column) == ("mysite/settings.py", line, column)
    assert finding.message.startswith(starts)


def test_reported_on_the_command_not_also_on_the_setting(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    files = PROJECT | {
        "mysite/settings.py": POOL + "RQ_QUEUES = {'default': {'URL': 'redis://'}}\n",
        "Procfile": "worker: python manage.py rqworker\n",
    }
    assert [(f.file, f.line) for f in scan_source(tmp_path, files, "PD317")] == [("Procfile", 1)]


def test_module_level_query_in_models_counts(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "shop/models.py": "from django.db import connection\n\nTABLES = connection.introspection"
        ".table_names()\n",
        "Procfile": "worker: python manage.py qcluster\n",
    }
    [finding] = scan_source(tmp_path, files, "PD317")

    assert "connection.introspection.table_names() at shop/models.py:3" in finding.message


@pytest.mark.parametrize(
    "files",
    [
        PROJECT
        | {"Procfile": "worker: python manage.py rqworker --worker-class rq.SimpleWorker\n"},
        PROJECT | {"Procfile": "worker: python manage.py rqworker --worker-class=rq.SpawnWorker\n"},
        PROJECT
        | {
            "mysite/settings.py": POOL + "RQ = {'WORKER_CLASS': 'rq.worker.SimpleWorker'}\n",
            "Procfile": "worker: python manage.py rqworker\n",
        },
        PROJECT | {"Procfile": "worker: python manage.py run_huey -k thread\n"},
        PROJECT | {"Procfile": "worker: python manage.py run_huey\n"},
        PROJECT
        | {
            "mysite/settings.py": POOL + "HUEY = {'consumer': {'worker_type': 'process'}}\n",
            "Procfile": "worker: python manage.py run_huey -k greenlet\n",
        },
        PROJECT | {"mysite/settings.py": POOL + "Q_CLUSTER = {'name': 'shop', 'sync': True}\n"},
        PROJECT | {"Procfile": "worker: python manage.py rundramatiq\n"},
        PROJECT | {"Procfile": "worker: python manage.py db_worker\n"},
        PROJECT
        | {"mysite/settings.py": NO_POOL, "Procfile": "worker: python manage.py qcluster\n"},
        {"mysite/settings.py": POOL, "Procfile": "worker: python manage.py qcluster\n"},
        {
            "mysite/settings.py": POOL,
            "mysite/wsgi.py": "TOTAL = Book.objects.count()\n",
            "shop/middleware.py": "BLOCKED = list(Ip.objects.all())\n",
            "Procfile": "worker: python manage.py qcluster\n",
        },
        PROJECT | {"Procfile": "# worker: python manage.py qcluster\n"},
    ],
    ids=[
        "rq-simple-worker",
        "rq-spawn-worker",
        "rq-simple-worker-setting",
        "huey-threads",
        "huey-default-threads",
        "huey-command-overrides-setting",
        "django-q-sync",
        "dramatiq-forks-before-import",
        "tasks-db-worker-does-not-fork",
        "no-pool",
        "no-query",
        "wsgi-and-middleware-not-loaded",
        "commented-out",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD317") == []


def test_unknown_pool_asks(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = (
        "import os\n\nDATABASES = {'default': {'OPTIONS': {'pool': os.environ['DB_POOL']}}}\n"
    )
    files = PROJECT | {
        "mysite/settings.py": settings,
        "Procfile": "worker: python manage.py qcluster\n",
    }
    [finding] = scan_source(tmp_path, files, "PD317")

    assert finding.message.startswith("if the pool is on (mysite/settings.py:3: ")


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    files = PROJECT | {
        "Procfile": "worker: python manage.py qcluster  # pooldoctor: ignore[PD317]\n"
    }
    assert scan_source(tmp_path, files, "PD317") == []
