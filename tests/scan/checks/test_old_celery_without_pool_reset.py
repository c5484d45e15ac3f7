"""PD313: Celery before 5.6 with a database pool and no worker_process_init handler."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'
CELERY_APP = """\
    from celery import Celery

    app = Celery("mysite")
    app.config_from_object("django.conf:settings", namespace="CELERY")
"""
HANDLER = """\
    from celery.signals import worker_process_init
    from django.db import connections


    @worker_process_init.connect
    def discard_inherited_pool(**kwargs):
        for conn in connections.all():
            conn.close_pool()
"""


def test_old_celery_pin_is_flagged_at_the_pin(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "mysite/celery.py": CELERY_APP,
        "requirements.txt": "django==5.2.4\ncelery[redis]==5.5.3\n",
    }
    [finding] = scan_source(tmp_path, files, "PD313")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD313",
        "requirements.txt",
        2,
        1,
    )
    assert finding.message == (
        "Celery 5.5 with a database pool (mysite/settings.py:1) and no worker_process_init "
        "handler calling close_pool(): before Celery 5.6 a pool opened in the parent before fork "
        "is inherited by every prefork child, which then share its sockets"
    )
    assert "worker_process_init" in finding.fix and "5.6" in finding.fix


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("requirements/base.txt", "celery>=5.4,<5.6\n", 1),
        ("poetry.lock", '[[package]]\nname = "celery"\nversion = "5.4.0"\n', 2),
        ("uv.lock", 'version = 1\n\n[[package]]\nname = "celery"\nversion = "5.5.3"\n', 4),
        ("pyproject.toml", '[project]\ndependencies = [\n    "celery==5.3.6",\n]\n', 3),
    ],
)
def test_versions_from_bounds_and_locks(
    tmp_path: Path, scan_source: ScanSource, name: str, text: str, line: int
) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": POOL, name: text}, "PD313")

    assert (finding.file, finding.line) == (name, line)


@pytest.mark.parametrize(
    "files",
    [
        {"mysite/settings.py": POOL, "requirements.txt": "celery==5.6.0\n"},
        {"mysite/settings.py": POOL, "requirements.txt": "celery==6.0.1\n"},
        {"mysite/settings.py": POOL, "requirements.txt": "celery>=5.4\n"},
        {"requirements.txt": "celery==5.5.3\n"},
        {
            "mysite/settings.py": POOL.replace('{"timeout": 5}', "False"),
            "requirements.txt": "celery==5.5.3\n",
        },
        {
            "mysite/settings.py": POOL,
            "mysite/celery.py": HANDLER,
            "requirements.txt": "celery==5.5.3\n",
        },
        {
            "mysite/settings.py": POOL,
            "mysite/signals.py": """\
                from celery.signals import worker_process_init
                from django.db import connection


                def discard_inherited_pool(**kwargs):
                    connection.close_pool()


                worker_process_init.connect(discard_inherited_pool)
            """,
            "requirements.txt": "celery==5.5.3\n",
        },
    ],
    ids=[
        "celery-5.6",
        "celery-6",
        "no-upper-bound",
        "no-pool",
        "pool-off",
        "handler",
        "handler-connect-call",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD313") == []


def test_a_handler_that_only_closes_connections_does_not_count(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    handler = """\
        from celery.signals import worker_process_init
        from django.db import connections


        @worker_process_init.connect
        def close_inherited_connections(**kwargs):
            connections.close_all()
    """
    files = {
        "mysite/settings.py": POOL,
        "mysite/celery.py": handler,
        "requirements.txt": "celery==5.5.3\n",
    }
    [finding] = scan_source(tmp_path, files, "PD313")

    assert finding.file == "requirements.txt"


def test_reported_once_with_several_pools(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings/prod.py": POOL,
        "mysite/settings/worker.py": POOL,
        "requirements.txt": "celery==5.5.3\n",
    }
    [finding] = scan_source(tmp_path, files, "PD313")

    assert "(mysite/settings/prod.py:1)" in finding.message


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "requirements.txt": "celery==5.5.3  # pooldoctor: ignore[PD313]\n",
    }
    assert scan_source(tmp_path, files, "PD313") == []
