"""PD316: persistent connections without a pool, in a project served over ASGI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pooldoctor.commands.scan import run_scan, select_checks

from .conftest import ScanSource

PROJECTS = Path(__file__).resolve().parents[2] / "projects"
SETTINGS = """\
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "CONN_MAX_AGE": 60,
        }
    }
"""
UVICORN = "web: uvicorn mysite.asgi:application --port $PORT\n"


def test_the_web_asgi_project_is_flagged_on_its_settings_line() -> None:
    root = PROJECTS / "web_asgi"
    [finding] = run_scan(root, [], select_checks(["PD316"])).findings

    assert (finding.code, finding.severity, finding.file, finding.line, finding.column) == (
        "PD316",
        "error",
        "mysite/settings.py",
        16,
        25,
    )
    assert finding.message == (
        "CONN_MAX_AGE=60 without a pool, and the app is served over ASGI (uvicorn at "
        "Procfile:2): Django's ASGI handler runs each request's ORM code on a thread that ends "
        "with the request, so every request leaves its persistent connection open on the "
        "server until garbage collection (measured: 30 requests, 30 sessions; 100 requests "
        "exhausted max_connections=100)"
    )
    assert finding.fix.startswith("set CONN_MAX_AGE = 0 (the default), or use Django's pool")


@pytest.mark.parametrize(
    ("name", "text", "evidence"),
    [
        ("Procfile", UVICORN, "uvicorn at Procfile:1"),
        ("Procfile", "web: python -m uvicorn mysite.asgi:app\n", "uvicorn at Procfile:1"),
        (
            "Procfile",
            "web: gunicorn mysite.asgi:application -k uvicorn.workers.UvicornWorker -w 4\n",
            "gunicorn -k uvicorn.workers.UvicornWorker at Procfile:1",
        ),
        (
            "Dockerfile",
            'FROM python:3.12\nCMD ["daphne", "-b", "0.0.0.0", "mysite.asgi:application"]\n',
            "daphne at Dockerfile:2",
        ),
        (
            "Dockerfile.prod",
            "FROM python:3.12\nENTRYPOINT /venv/bin/hypercorn mysite.asgi:application\n",
            "hypercorn at Dockerfile.prod:2",
        ),
        (
            "docker-compose.yml",
            "services:\n  web:\n    build: .\n    command: uvicorn mysite.asgi:application\n",
            "uvicorn at docker-compose.yml:4",
        ),
        (
            "deploy/web.service",
            "[Service]\nExecStart=/venv/bin/gunicorn --worker-class "
            "uvicorn_worker.UvicornWorker mysite.asgi\n",
            "gunicorn -k uvicorn_worker.UvicornWorker at deploy/web.service:2",
        ),
        (
            "bin/start.sh",
            "#!/bin/sh\nexec granian --interface asgi mysite.asgi:application\n",
            "granian at bin/start.sh:2",
        ),
        (
            "k8s/web.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  template:\n"
            "    spec:\n      containers:\n        - name: web\n          command:\n"
            "            - gunicorn\n            - -k\n"
            "            - uvicorn.workers.UvicornWorker\n"
            "            - mysite.asgi:application\n",
            "gunicorn -k uvicorn.workers.UvicornWorker at k8s/web.yaml:9",
        ),
        (
            "heroku.yml",
            "run:\n  web:\n    command:\n      - daphne -b 0.0.0.0 mysite.asgi:application\n",
            "daphne at heroku.yml:4",
        ),
        (
            "Dockerfile",
            'FROM python:3.12\nENTRYPOINT ["gunicorn"]\n'
            'CMD ["-k", "uvicorn.workers.UvicornWorker", "mysite.asgi:application"]\n',
            "gunicorn -k uvicorn.workers.UvicornWorker at Dockerfile:2",
        ),
        (
            "compose.yaml",
            "services:\n  web:\n    command:\n      - gunicorn\n      - --worker-class\n"
            "      - uvicorn_worker.UvicornWorker\n      - mysite.asgi\n",
            "gunicorn -k uvicorn_worker.UvicornWorker at compose.yaml:3",
        ),
        (
            "gunicorn.conf.py",
            'bind = "0.0.0.0:8000"\nworker_class = "uvicorn.workers.UvicornWorker"\n',
            "gunicorn -k uvicorn.workers.UvicornWorker at gunicorn.conf.py:2",
        ),
        (
            "run.py",
            'import uvicorn\n\nuvicorn.run("mysite.asgi:application", workers=2)\n',
            "uvicorn.run at run.py:3",
        ),
        (
            "requirements.txt",
            "django==6.1\nuvicorn[standard]==0.30.6\n",
            "uvicorn is a dependency at requirements.txt:2; no command in the scanned files says "
            "how the app is served",
        ),
        (
            "pyproject.toml",
            '[project]\nname = "shop"\ndependencies = [\n    "django>=5.2",\n    "daphne>=4",\n]\n',
            "daphne is a dependency at pyproject.toml:5",
        ),
    ],
)
def test_asgi_servers_are_found_in_deployment_files(
    tmp_path: Path, scan_source: ScanSource, name: str, text: str, evidence: str
) -> None:
    files = {"mysite/settings.py": SETTINGS, name: text}
    [finding] = scan_source(tmp_path, files, "PD316")

    assert (finding.file, finding.line) == ("mysite/settings.py", 4)
    assert f"served over ASGI ({evidence}" in finding.message


@pytest.mark.parametrize(
    ("settings", "line", "start"),
    [
        ('DATABASES = {"default": {"CONN_MAX_AGE": None}}\n', 1, "CONN_MAX_AGE=None (persistent"),
        (
            'import os\n\nDATABASES = {"default": {"CONN_MAX_AGE": int(os.environ["AGE"])}}\n',
            3,
            "CONN_MAX_AGE may be non-zero (os.environ['AGE'] has no default)",
        ),
        (
            "import dj_database_url\n\n"
            'DATABASES = {"default": dj_database_url.config(conn_max_age=600)}\n',
            3,
            "CONN_MAX_AGE=600 without a pool",
        ),
        (
            'DATABASES = {"default": {}}\nDATABASES["default"]["CONN_MAX_AGE"] = 30\n',
            2,
            "CONN_MAX_AGE=30 without a pool",
        ),
    ],
)
def test_every_shape_of_persistent_connections_is_flagged(
    tmp_path: Path, scan_source: ScanSource, settings: str, line: int, start: str
) -> None:
    files = {"mysite/settings.py": settings, "Procfile": UVICORN}
    [finding] = scan_source(tmp_path, files, "PD316")

    assert finding.line == line
    assert finding.message.startswith(start)


ASGI_PY = """\
    from django.core.asgi import get_asgi_application

    application = get_asgi_application()
"""


@pytest.mark.parametrize(
    "files",
    [
        # startproject writes asgi.py into every project: not evidence that it is served
        {"mysite/settings.py": SETTINGS, "mysite/asgi.py": ASGI_PY},
        {"mysite/settings.py": SETTINGS, "Procfile": "web: gunicorn mysite.wsgi -w 4\n"},
        # a command says how the app is served, and it is WSGI: the dependency is not used
        {
            "mysite/settings.py": SETTINGS,
            "requirements.txt": "uvicorn==0.30.6\n",
            "Procfile": "web: gunicorn mysite.wsgi\n",
        },
        {"mysite/settings.py": SETTINGS.replace("60", "0"), "Procfile": UVICORN},
        {"mysite/settings.py": SETTINGS.replace('"CONN_MAX_AGE": 60,', ""), "Procfile": UVICORN},
        {
            "mysite/settings.py": SETTINGS.replace(
                '"CONN_MAX_AGE": 60,', '"CONN_MAX_AGE": 0, "OPTIONS": {"pool": True},'
            ),
            "Procfile": UVICORN,
        },
        {
            "mysite/settings.py": SETTINGS,
            "Procfile": "web: uvicorn mysite.wsgi:app --interface wsgi\n",
        },
        {"mysite/settings.py": SETTINGS, "Procfile": "web: granian mysite.wsgi:application\n"},
        {"mysite/settings.py": SETTINGS, "Procfile": "# web: uvicorn mysite.asgi:application\n"},
        {
            "mysite/settings.py": SETTINGS,
            "poetry.lock": '[[package]]\nname = "uvicorn"\nversion = "0.30.6"\n',
        },
        {"mysite/settings.py": SETTINGS, "requirements.txt": "django-uvicorn-extras==1.0\n"},
        {
            "mysite/settings.py": SETTINGS,
            "Dockerfile": "RUN pip install uvicorn\nCMD gunicorn mysite.wsgi:application\n",
        },
        {
            "mysite/settings.py": SETTINGS,
            ".github/workflows/e2e.yml": "jobs:\n  e2e:\n    steps:\n"
            "      - run: uvicorn mysite.asgi:application &\n",
        },
        {
            "mysite/settings.py": SETTINGS,
            "k8s/web.yaml": "kind: Deployment\nmetadata:\n  labels:\n    app: daphne\nspec:\n"
            "  template:\n    spec:\n      containers:\n        - name: daphne\n"
            '          command: ["gunicorn", "mysite.wsgi"]\n',
        },
    ],
    ids=[
        "asgi-py-only",
        "wsgi-server",
        "wsgi-command-beats-dependency",
        "conn-max-age-0",
        "conn-max-age-default",
        "pool",
        "uvicorn-wsgi-interface",
        "granian-default-interface",
        "commented-out",
        "lock-file-only",
        "other-package",
        "installed-but-wsgi-command",
        "ci-workflow",
        "k8s-label-and-wsgi-command",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD316") == []


def test_pool_with_persistent_connections_is_pd101s(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    settings = SETTINGS.replace(
        '"CONN_MAX_AGE": 60,', '"CONN_MAX_AGE": 60, "OPTIONS": {"pool": True},'
    )
    files = {"mysite/settings.py": settings, "Procfile": UVICORN}

    assert scan_source(tmp_path, files, "PD316") == []
    assert [f.code for f in scan_source(tmp_path, files, "PD101")] == ["PD101"]


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = SETTINGS.replace(
        '"CONN_MAX_AGE": 60,', '"CONN_MAX_AGE": 60,  # pooldoctor: ignore[PD316]'
    )
    files = {"mysite/settings.py": settings, "Procfile": UVICORN}

    assert scan_source(tmp_path, files, "PD316") == []
