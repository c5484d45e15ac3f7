"""PD311: gunicorn --preload with a database pool and no post_fork hook closing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'
CONFIG = """\
    bind = "0.0.0.0:8000"
    workers = 4
    preload_app = True
"""
FORK_HOOK = """\
    def post_fork(server, worker):
        from django.db import connections

        for conn in connections.all():
            conn.close_pool()
"""


def test_preload_app_in_a_gunicorn_config_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    files = {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG}
    [finding] = scan_source(tmp_path, files, "PD311")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD311",
        "gunicorn.conf.py",
        3,
        1,
    )
    assert finding.message == (
        "gunicorn preload_app = True with a database pool and no post_fork hook closing it: the "
        "app loads in the master before fork, so a pool or connection opened while loading is "
        "shared by every worker"
    )


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        (
            "Procfile",
            "release: python manage.py migrate\nweb: gunicorn mysite.wsgi --preload\n",
            2,
            27,
        ),
        ("Dockerfile", 'FROM python:3.12\nCMD ["gunicorn", "--preload", "mysite.wsgi"]\n', 2, 19),
        (
            "bin/start.sh",
            "#!/bin/sh\nexec gunicorn mysite.wsgi \\\n    --preload \\\n    -w 4\n",
            3,
            5,
        ),
        (
            "docker-compose.yml",
            "services:\n  web:\n    environment:\n      GUNICORN_CMD_ARGS: --preload -w 4\n",
            4,
            26,
        ),
        (
            "deploy/web.service",
            "[Service]\nExecStart=/venv/bin/gunicorn --preload app.wsgi\n",
            2,
            30,
        ),
        ("supervisord.conf", "[program:web]\ncommand=gunicorn app.wsgi --preload\n", 2, 27),
    ],
)
def test_preload_on_a_command_line_is_flagged(
    tmp_path: Path, scan_source: ScanSource, name: str, text: str, line: int, column: int
) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": POOL, name: text}, "PD311")

    assert (finding.file, finding.line, finding.column) == (name, line, column)
    assert finding.message.startswith("gunicorn --preload with a database pool")


@pytest.mark.parametrize(
    "files",
    [
        {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG + FORK_HOOK},
        {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG, "hooks/gunicorn.py": FORK_HOOK},
        {"mysite/settings.py": POOL.replace('{"timeout": 5}', "False"), "gunicorn.conf.py": CONFIG},
        {"gunicorn.conf.py": CONFIG},
        {"mysite/settings.py": POOL, "gunicorn.conf.py": CONFIG.replace("True", "False")},
        {"mysite/settings.py": POOL, "Procfile": "web: gunicorn mysite.wsgi --workers 4\n"},
        {"mysite/settings.py": POOL, "Procfile": "# web: gunicorn mysite.wsgi --preload\n"},
        {"mysite/settings.py": POOL, "Procfile": "web: gunicorn mysite.wsgi --preload-foo\n"},
        {"mysite/settings.py": POOL, "Procfile": "web: uwsgi --preload\n"},
    ],
    ids=[
        "fork-hook",
        "fork-hook-elsewhere",
        "pool-off",
        "no-pool",
        "preload-false",
        "no-preload",
        "commented-out",
        "other-option",
        "not-gunicorn",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD311") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "gunicorn.conf.py": CONFIG.replace("True", "True  # pooldoctor: ignore[PD311]"),
        "Procfile": "web: gunicorn mysite.wsgi --preload  # pooldoctor: ignore[PD311]\n",
    }
    assert scan_source(tmp_path, files, "PD311") == []
