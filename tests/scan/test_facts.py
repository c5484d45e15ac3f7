"""The project-wide facts: Celery's version from pins and locks, pools, fork hooks, handlers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pooldoctor.scan.facts import Facts, Location, gather
from pooldoctor.scan.source import discover

POOL_SETTINGS = """\
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "OPTIONS": {"pool": True},
        }
    }
"""


def _facts(root: Path, files: dict[str, str]) -> Facts:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return gather(discover(root, [root]).files)


@pytest.mark.parametrize(
    ("name", "text", "version", "line"),
    [
        ("requirements.txt", "django==5.2\ncelery==5.5.3\n", (5, 5), 2),
        ("requirements.txt", "celery[redis]==5.4.0  # workers\n", (5, 4), 1),
        ("requirements.txt", "celery~=5.3\n", (5, 3), 1),
        ("requirements/base.in", "django\ncelery>=5.4,<5.6\n", (5, 5), 2),
        ("poetry.lock", '[[package]]\nname = "celery"\nversion = "5.5.3"\n', (5, 5), 2),
        (
            "uv.lock",
            '[[package]]\nname = "amqp"\nversion = "5.3.1"\n\n'
            '[[package]]\nname = "celery"\nversion = "5.6.0"\n',
            (5, 6),
            6,
        ),
        (
            "pyproject.toml",
            '[project]\nname = "shop"\ndependencies = [\n    "django>=5.1",\n'
            '    "celery[redis]==5.5.2",\n]\n',
            (5, 5),
            5,
        ),
        ("pyproject.toml", '[tool.poetry.dependencies]\ncelery = "^5.4"\n', (5, 4), 2),
        ("pyproject.toml", 'dependencies = ["django>=5.1", "celery==5.5.3"]\n', (5, 5), 1),
        ("Pipfile", '[packages]\ncelery = "==5.4.0"\n', (5, 4), 2),
    ],
)
def test_celery_version_from_pins_and_locks(
    tmp_path: Path, name: str, text: str, version: tuple[int, int], line: int
) -> None:
    facts = _facts(tmp_path, {name: text})

    assert facts.celery_version == version
    assert facts.celery_version_at == Location(name, line)


@pytest.mark.parametrize(
    "text",
    [
        "celery>=5.4\n",  # no upper bound: any release may be installed
        "celery<6\n",  # says nothing about 5.x
        "django-celery-beat==2.7.0\n",  # another package
        "celery-redbeat==2.2.0\n",
    ],
)
def test_no_celery_version_without_a_pin(tmp_path: Path, text: str) -> None:
    facts = _facts(tmp_path, {"requirements.txt": text})

    assert facts.celery_version is None
    assert facts.celery_version_at is None


def test_pools_are_gathered_across_files(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        {
            "mysite/settings/base.py": 'DATABASES = {"default": {"NAME": "shop"}}\n',
            "mysite/tests/test_settings.py": 'EXPECTED = {"OPTIONS": {"pool": True}}\n',
            "mysite/settings/prod.py": """\
                from .base import *

                DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 2}}
            """,
            "mysite/settings/worker.py": POOL_SETTINGS,
            "mysite/settings/test.py": 'DATABASES = {"default": {"OPTIONS": {"pool": False}}}\n',
        },
    )

    # The test settings and the test data are not the project's settings.
    assert facts.pools == (
        Location("mysite/settings/prod.py", 3),
        Location("mysite/settings/worker.py", 4),
    )
    assert facts.has_pool
    assert facts.settings.modules == (
        "mysite.settings.base",
        "mysite.settings.prod",
        "mysite.settings.worker",
    )
    assert facts.settings.guessed


def test_the_settings_manage_py_names_are_the_live_ones(tmp_path: Path) -> None:
    manage = 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings.prod")\n'
    facts = _facts(
        tmp_path,
        {
            "manage.py": manage,
            "mysite/settings/prod.py": 'DATABASES = {"default": {"NAME": "shop"}}\n',
            "mysite/settings/worker.py": POOL_SETTINGS,
        },
    )

    assert facts.pools == ()
    assert facts.settings.modules == ("mysite.settings.prod",)
    assert [r.where for r in facts.settings.references] == ["manage.py:2"]
    assert not facts.settings.guessed


def test_a_pool_from_the_environment_counts(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        {"settings.py": 'DATABASES = {"default": {"OPTIONS": {"pool": env.bool("DB_POOL")}}}\n'},
    )

    # Unset, the variable switches the pool off; set, on: scan asks rather than assumes.
    assert facts.pools == ()
    assert facts.pool_may_be_on
    assert facts.pool_question.startswith("if the pool is on (settings.py:1: ")
    assert "DB_POOL" in facts.pool_question


def test_no_pool(tmp_path: Path) -> None:
    facts = _facts(tmp_path, {"settings.py": 'DATABASES = {"default": {"CONN_MAX_AGE": 60}}\n'})

    assert not facts.has_pool


@pytest.mark.parametrize(
    "handler",
    [
        """\
            from celery.signals import worker_process_init
            from django.db import connections


            @worker_process_init.connect
            def discard_pool(**kwargs):
                for conn in connections.all():
                    conn.close_pool()
        """,
        """\
            from celery import signals
            from django.db import connection


            @signals.worker_process_init.connect(weak=False)
            def discard_pool(**kwargs):
                connection.close_pool()
        """,
        """\
            from celery.signals import worker_process_init
            from django.db import connection


            def discard_pool(**kwargs):
                connection.close_pool()


            worker_process_init.connect(discard_pool)
        """,
    ],
    ids=["decorator", "decorator-call", "connect-call"],
)
def test_worker_process_init_handler_discards_the_pool(tmp_path: Path, handler: str) -> None:
    facts = _facts(tmp_path, {"mysite/celery.py": handler})

    assert facts.discards_pool_in_child
    assert facts.uses_celery
    assert facts.forks_workers


def test_a_handler_on_another_signal_does_not_count(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        {
            "mysite/celery.py": """\
                from celery.signals import worker_ready
                from django.db import connection


                @worker_ready.connect
                def discard_pool(**kwargs):
                    connection.close_pool()
            """
        },
    )

    assert not facts.discards_pool_in_child


@pytest.mark.parametrize(
    "hook",
    [
        """\
            def post_fork(server, worker):
                from django.db import connections
                for conn in connections.all():
                    conn.close_pool()
        """,
        """\
            bind = "0.0.0.0:8000"


            def post_worker_init(worker):
                from django.db import connections
                connections.close_all()
        """,
    ],
)
def test_gunicorn_fork_hook(tmp_path: Path, hook: str) -> None:
    facts = _facts(tmp_path, {"gunicorn.conf.py": hook})

    assert facts.gunicorn_fork_hook
    assert facts.uses_gunicorn
    assert facts.forks_workers


def test_gunicorn_from_a_procfile(tmp_path: Path) -> None:
    facts = _facts(tmp_path, {"Procfile": "web: gunicorn mysite.wsgi\n"})

    assert facts.uses_gunicorn
    assert not facts.uses_celery
    assert not facts.gunicorn_fork_hook


def test_nothing(tmp_path: Path) -> None:
    assert _facts(tmp_path, {"app.py": "print('hello')\n"}) == Facts()


def test_servers_preloads_and_persistent_connections(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        {
            "requirements.txt": "django==6.1\nuvicorn==0.30.6\n",
            "Procfile": "web: gunicorn mysite.asgi -k uvicorn.workers.UvicornWorker --preload\n",
            "mysite/settings.py": 'DATABASES = {"default": {"CONN_MAX_AGE": None}}\n',
        },
    )

    assert [(s.where, s.server, s.asgi, s.command) for s in facts.servers] == [
        ("Procfile:1", "gunicorn -k uvicorn.workers.UvicornWorker", True, True),
        ("requirements.txt:2", "uvicorn", True, False),
    ]
    assert facts.asgi_server == facts.servers[0]
    assert facts.preloads == (Location("Procfile", 1),)
    assert facts.persistent == (Location("mysite/settings.py", 1),)
    assert facts.shares_connections_after_fork


def test_url_imports_resolve_relative_imports(tmp_path: Path) -> None:
    urls = "from . import views\nfrom .api import orders\nimport billing.hooks\nurlpatterns = []\n"
    facts = _facts(tmp_path, {"shop/urls.py": urls})

    assert {"shop.views", "shop.api", "shop.api.orders", "billing.hooks"} <= facts.url_imports


def test_queries_in_modules_loaded_before_fork(tmp_path: Path) -> None:
    facts = _facts(
        tmp_path,
        {
            "mysite/wsgi.py": "application = get_wsgi_application()\nX = Book.objects.count()\n",
            "shop/views.py": "Y = Book.objects.count()\n",
            "shop/urls.py": "Z = Book.objects.count()\n",
        },
    )

    assert [(q.where, q.text) for q in facts.app_import_queries] == [
        ("mysite/wsgi.py:2", "Book.objects.count()")
    ]
