"""PD315: gunicorn --preload with a query while the app loads, and connections that outlive it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pooldoctor.commands.scan import run_scan, select_checks

from .conftest import ScanSource

PROJECTS = Path(__file__).resolve().parents[2] / "projects"
POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'
PERSISTENT = 'DATABASES = {"default": {"CONN_MAX_AGE": 60}}\n'
WSGI = """\
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    from shop.models import Currency

    DEFAULT = Currency.objects.get(default=True)
"""
CONFIG = "workers = 4\npreload_app = True\n"
PROCFILE = "web: gunicorn mysite.wsgi --preload -w 4\n"


def test_the_web_preload_project_gets_one_error_naming_the_query() -> None:
    # GIVEN web_preload: preload_app = True, a pool, a query in mysite/wsgi.py, and another in
    # shop/views.py (imported at the first request, in the worker)
    findings = run_scan(PROJECTS / "web_preload", [], select_checks(["PD31"])).findings

    # THEN PD315 on the preload line names the WSGI module's query; PD311 steps aside for it,
    # and PD314 reports only the views' query, which PD315 leaves out
    assert [(f.code, f.file, f.line) for f in findings] == [
        ("PD315", "gunicorn.conf.py", 3),
        ("PD314", "shop/views.py", 6),
    ]
    finding = findings[0]
    assert (finding.severity, finding.column) == ("error", 1)
    assert finding.message == (
        "gunicorn preload_app = True with a query while the app loads "
        "(Currency.objects.get(default=True) at mysite/wsgi.py:11): the master opens the pool "
        "before fork, and every worker inherits the same socket and reads other workers' "
        "replies (measured: 129 of 300 replies crossed with a pool, 161 with CONN_MAX_AGE=60)"
    )
    assert "conn.close_pool()" in finding.fix
    assert "connections.close_all()" in finding.fix


def test_persistent_connections_without_a_pool_and_a_procfile(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    files = {"mysite/settings.py": PERSISTENT, "mysite/wsgi.py": WSGI, "Procfile": PROCFILE}
    [finding] = scan_source(tmp_path, files, "PD315")

    assert (finding.file, finding.line, finding.column) == ("Procfile", 1, 27)
    assert finding.message.startswith(
        "gunicorn --preload with a query while the app loads (Currency.objects.get(default=True) "
        "at mysite/wsgi.py:7): the master opens a persistent connection (CONN_MAX_AGE) before "
        "fork"
    )


@pytest.mark.parametrize(
    ("name", "source"),
    [
        (
            "mysite/settings.py",
            POOL + "from shop.models import Flag\nFLAGS = list(Flag.objects.all())\n",
        ),
        ("config/settings/production.py", "SITE = Site.objects.get_current()\n"),
        ("shop/models.py", "from django.db import connection\n\ncursor = connection.cursor()\n"),
        ("shop/admin.py", "CHOICES = [(c.pk, c.name) for c in Category.objects.all()]\n"),
        (
            "shop/apps.py",
            "from django.apps import AppConfig\n\n\nclass ShopConfig(AppConfig):\n"
            "    def ready(self):\n        self.count = Book.objects.count()\n",
        ),
        ("mysite/asgi.py", "application = get_asgi_application()\nTOTAL = Book.objects.count()\n"),
        ("shop/middleware.py", "BLOCKED = set(Ip.objects.values_list('ip', flat=True))\n"),
    ],
)
def test_modules_the_app_loads_before_fork(
    tmp_path: Path, scan_source: ScanSource, name: str, source: str
) -> None:
    files = {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG} | {name: source}
    [finding] = scan_source(tmp_path, files, "PD315")

    assert (finding.file, finding.line) == ("gunicorn.conf.py", 2)
    assert f" at {name}:" in finding.message


def test_several_queries_are_counted(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "gunicorn.conf.py": CONFIG,
        "mysite/wsgi.py": WSGI + "    OTHER = Currency.objects.count()\n",
    }
    [finding] = scan_source(tmp_path, files, "PD315")

    assert "(Currency.objects.get(default=True) at mysite/wsgi.py:7, and 1 more)" in finding.message


HOOK_CLOSE_POOL = textwrap.dedent("""\
    def post_fork(server, worker):
        from django.db import connections

        for conn in connections.all():
            conn.close_pool()
""")
HOOK_CLOSE_ALL = textwrap.dedent("""\
    def post_fork(server, worker):
        from django.db import connections

        connections.close_all()
""")


@pytest.mark.parametrize(
    "files",
    [
        {"mysite/settings.py": 'DATABASES = {"default": {"CONN_MAX_AGE": 0}}\n'},
        {"mysite/settings.py": 'DATABASES = {"default": {}}\n'},
        {"mysite/settings.py": POOL, "gunicorn.conf.py": "workers = 4\n"},
        {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG + HOOK_CLOSE_POOL},
        {"mysite/settings.py": PERSISTENT, "gunicorn.conf.py": CONFIG + HOOK_CLOSE_ALL},
        {
            "mysite/settings.py": POOL,
            "mysite/wsgi.py": "application = get_wsgi_application()\n",
            "shop/views.py": "CODES = list(Currency.objects.all())\n",
            "mysite/urls.py": "TOTAL = Book.objects.count()\nurlpatterns = []\n",
        },
    ],
    ids=[
        "conn-max-age-0",
        "no-persistence",
        "no-preload",
        "close-pool-hook",
        "close-all-hook-without-pool",
        "query-in-views-and-urls-only",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    base = {"mysite/wsgi.py": WSGI, "gunicorn.conf.py": CONFIG}
    assert scan_source(tmp_path, base | files, "PD315") == []


def test_close_all_does_not_undo_an_inherited_pool(tmp_path: Path, scan_source: ScanSource) -> None:
    # With a pool, connection.close() hands the connection back to the pool the worker
    # inherited: only close_pool() discards it.
    files = {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG + HOOK_CLOSE_ALL}
    files["mysite/wsgi.py"] = WSGI

    assert [f.code for f in scan_source(tmp_path, files, "PD315")] == ["PD315"]


def test_pd311_stands_without_the_query_and_pd314_with_celery(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    plain = {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG}
    assert [f.code for f in scan_source(tmp_path / "a", plain, "PD31")] == ["PD311"]
    # Celery's prefork parent imports the same modules: PD314 keeps the query as well
    celery = plain | {"mysite/wsgi.py": WSGI, "mysite/celery.py": "from celery import Celery\n"}
    codes = [(f.code, f.file) for f in scan_source(tmp_path / "b", celery, "PD31")]
    assert codes == [("PD315", "gunicorn.conf.py"), ("PD314", "mysite/wsgi.py")]


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    config = CONFIG.replace("True", "True  # pooldoctor: ignore[PD315]")
    files = {"mysite/settings.py": POOL, "gunicorn.conf.py": config, "mysite/wsgi.py": WSGI}
    assert scan_source(tmp_path, files, "PD315") == []
