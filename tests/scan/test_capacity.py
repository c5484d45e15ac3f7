"""PD106: the processes the deployment files start, times the pool, against the server's
connections; and the reading of each kind of deployment file it rests on."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import pooldoctor, write_tree

from pooldoctor.scan.deployment import (
    HEROKU,
    HOST,
    budgets_in_text,
    program,
    workers_in_text,
)

SETTINGS = """\
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "cms",
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"pool": POOL},
        }
    }
"""
# The CMS of the issue: two celery multi groups with -c10 under supervisord, gunicorn workers.
SUPERVISORD = """\
    [supervisord]
    nodaemon=true

    [program:celery]
    command=/srv/venv/bin/celery -A cms multi start 2 -c10
        -Q:1 default -Q:2 media --pidfile=/run/celery/%%n.pid
    directory=/srv/cms

    [program:web]
    command=/srv/venv/bin/gunicorn cms.wsgi -w WORKERS --bind 127.0.0.1:8000
"""


def _cms(root: Path, workers: int, pool: str = "True", **more: str) -> Path:
    return write_tree(
        root,
        {
            "cms/settings.py": SETTINGS.replace("POOL", pool),
            "deploy/supervisord.conf": SUPERVISORD.replace("WORKERS", str(workers)),
            **more,
        },
    )


def _pd106(root: Path) -> list[dict[str, Any]]:
    proc = pooldoctor("scan", "--select", "PD106", "--format", "json", cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    findings: list[dict[str, Any]] = json.loads(proc.stdout)["findings"]
    assert proc.returncode == (1 if findings else 0)
    return findings


def _lines(text: str) -> list[str]:
    return textwrap.dedent(text).splitlines()


# --- the CMS, end to end


def test_the_cms_over_budget_is_flagged_at_its_pool(tmp_path: Path) -> None:
    # GIVEN 2 celery multi groups x -c10 + 5 gunicorn workers, pool True (max_size 4)
    root = _cms(tmp_path, workers=5)
    # WHEN scan reads it
    [finding] = _pd106(root)
    # THEN the pool's line is flagged with every contributing file:line and the arithmetic
    assert (finding["file"], finding["line"], finding["severity"]) == (
        "cms/settings.py",
        6,
        "warning",
    )
    assert finding["message"] == (
        "supervisord/systemd: celery multi start 2 groups x -c10 = 20 "
        "(deploy/supervisord.conf:5) + gunicorn -w 5 = 5 (deploy/supervisord.conf:10): "
        "25 processes x pool max_size 4 = 100 > 97 available connections (PostgreSQL's "
        "default max_connections 100 - 3 reserved); min_size 4 is opened at start, so 100 "
        "are held even when idle; past it connections fail with 'too many clients already'"
    )


def test_the_safe_look_alike_is_not_flagged(tmp_path: Path) -> None:
    # 2 x 10 + 2 = 22 processes x 4 = 88: the CMS, under the 97 it may use
    assert _pd106(_cms(tmp_path, workers=2)) == []


def test_parents_that_open_the_pool_at_import_count_their_min_size(tmp_path: Path) -> None:
    # GIVEN the 88-connection CMS whose app queries while loading, gunicorn preloading it
    root = _cms(
        tmp_path,
        workers=2,
        **{
            "cms/apps.py": """\
                from django.apps import AppConfig

                class CmsConfig(AppConfig):
                    name = "cms"

                    def ready(self):
                        from cms.models import Site
                        Site.objects.get(pk=1)
            """
        },
    )
    conf = root / "deploy" / "supervisord.conf"
    conf.write_text(conf.read_text().replace("-w 2", "-w 2 --preload"))
    # WHEN scan reads it
    [finding] = _pd106(root)
    # THEN each celery node's main process and gunicorn's master add min_size 4: 88 + 12 > 97
    assert (
        "22 processes x pool max_size 4 = 88 + 3 parent processes x min_size 4 = 12"
        in (finding["message"])
    )
    assert "the query at cms/apps.py:8 opens the pool in each parent" in finding["message"]


def test_a_bigger_pool_and_a_larger_server(tmp_path: Path) -> None:
    # GIVEN the safe CMS with max_size 10 (22 x 10 = 220)
    root = _cms(tmp_path, workers=2, pool='{"min_size": 2, "max_size": 10}')
    [finding] = _pd106(root)
    assert "22 processes x pool max_size 10 = 220 > 97" in finding["message"]
    assert "min_size 2 is opened at start, so 44 are held even when idle" in finding["message"]
    # WHEN compose runs the server with max_connections=300
    write_tree(
        root,
        {
            "docker-compose.yml": """\
                services:
                  db:
                    image: postgres:17
                    command: postgres -c max_connections=300 -c superuser_reserved_connections=5
            """
        },
    )
    # THEN 220 fit in 295
    assert _pd106(root) == []
    (root / "docker-compose.yml").write_text(
        "services:\n  db:\n    image: postgres:17\n    command: postgres -c max_connections=200\n"
    )
    [finding] = _pd106(root)
    assert (
        "> 197 available connections (max_connections 200 at docker-compose.yml:4 - 3 "
        in (finding["message"])
    )


def test_a_pool_from_the_environment_is_not_guessed(tmp_path: Path) -> None:
    root = _cms(tmp_path, workers=9, pool='env.json("POOL")')
    assert _pd106(root) == []


def test_compose_replicas_multiply_and_gunicorn_config_fills_in_workers(tmp_path: Path) -> None:
    # GIVEN compose: 3 web replicas (gunicorn -c gunicorn.conf.py, workers = 4 there) and a
    # celery worker -c 8 scaled to 2
    root = write_tree(
        tmp_path,
        {
            "cms/settings.py": SETTINGS.replace("POOL", "True"),
            "gunicorn.conf.py": "bind = '0.0.0.0:8000'\nworkers = 4\n",
            "compose.yaml": """\
                services:
                  web:
                    build: .
                    command: ["gunicorn", "-c", "gunicorn.conf.py", "cms.wsgi"]
                    deploy:
                      replicas: 3
                  worker:
                    build: .
                    command: >
                      celery -A cms worker
                      --concurrency=8 -l info
                    scale: 2
                  db:
                    image: postgres:17
            """,
        },
    )
    # 3 x 4 + 2 x 8 = 28 processes x 4 = 112 > 97
    [finding] = _pd106(root)
    assert finding["message"].startswith(
        "compose.yaml: gunicorn workers = 4 (gunicorn.conf.py:2) x replicas 3 = 12 "
        "(compose.yaml:4) + celery worker -c8 x scale 2 = 16 (compose.yaml:9): "
        "28 processes x pool max_size 4 = 112 > 97"
    )


def test_separate_deployments_are_not_added_up(tmp_path: Path) -> None:
    # A Procfile (Heroku) and a Dockerfile each run 15 processes: 60 connections each, not 120.
    root = write_tree(
        tmp_path,
        {
            "cms/settings.py": SETTINGS.replace("POOL", "True"),
            "Procfile": "web: gunicorn cms.wsgi -w 5\nworker: celery -A cms worker -c 10\n",
            "Dockerfile": 'FROM python:3.12\nCMD ["celery", "-A", "cms", "worker", "-c", "15"]\n',
        },
    )
    assert _pd106(root) == []


def test_without_a_pool_each_thread_holds_a_connection(tmp_path: Path) -> None:
    # GIVEN no pool and a systemd unit: gunicorn 4 workers x 30 threads = 120 threads
    root = write_tree(
        tmp_path,
        {
            "cms/settings.py": SETTINGS.replace('"OPTIONS": {"pool": POOL},', ""),
            "deploy/web.service": """\
                [Service]
                ExecStartPre=/srv/venv/bin/python manage.py migrate
                ExecStart=/srv/venv/bin/gunicorn cms.wsgi \\
                    --workers 4 --threads 30
            """,
        },
    )
    [finding] = _pd106(root)
    assert (finding["file"], finding["line"]) == ("deploy/web.service", 3)
    assert "4 processes (120 with their threads)" in finding["message"]


# --- reading the deployment files


@pytest.mark.parametrize(
    ("command", "name", "processes", "threads"),
    [
        ("celery -A cms worker -c 10", "celery worker", 10, 1),
        ("celery -A cms worker --concurrency=6 -P prefork", "celery worker", 6, 1),
        ("celery -A cms worker -c10 -P threads", "celery worker", 1, 10),
        ("celery -A cms worker --pool gevent --concurrency 100", "celery worker", 1, 100),
        ("celery -A cms worker -P solo", "celery worker", 1, 1),
        ("celery -A cms worker --autoscale=12,3", "celery worker", 12, 1),
        ("celery -A cms worker", "celery worker", 1, 1),  # the CPU count: a lower bound of 1
        ("celery -A cms multi start 3 -c 4", "celery multi", 12, 1),
        ("celery multi start w1 w2 -A cms -c 5", "celery multi", 10, 1),
        ("celery -A cms multi restart 2 -c 4 -P threads", "celery multi", 2, 4),
        ("python -m celery -A cms worker -c 3", "celery worker", 3, 1),
        ("gunicorn cms.wsgi -w 4", "gunicorn", 4, 1),
        ("gunicorn cms.wsgi --workers=3 --threads 8", "gunicorn", 3, 8),
        ("gunicorn cms.wsgi -w ${WEB_CONCURRENCY:-6}", "gunicorn", 6, 1),
        ("gunicorn cms.wsgi", "gunicorn", 1, 1),
        ("uvicorn cms.asgi:application --workers 4", "uvicorn", 4, 1),
        ("hypercorn -w 2 cms.asgi:application", "hypercorn", 2, 1),
        ("daphne cms.asgi:application", "daphne", 1, 1),
        ("python manage.py migrate && exec gunicorn cms.wsgi -w2", "gunicorn", 2, 1),
        ('sh -c "python manage.py migrate; celery -A cms worker -c 7"', "celery worker", 7, 1),
        ("newrelic-admin run-program gunicorn cms.wsgi -w 3", "gunicorn", 3, 1),
    ],
)
def test_commands(command: str, name: str, processes: int, threads: int) -> None:
    from pooldoctor.scan.deployment import _tokens

    found = program(_tokens(command))

    assert found is not None
    assert (found.name, found.processes, found.threads) == (name, processes, threads)


@pytest.mark.parametrize(
    "command",
    [
        "celery -A cms multi stopwait 2 -c 10",
        "celery -A cms beat",
        "python manage.py runserver",
        "celery -A cms inspect ping",
    ],
)
def test_commands_that_start_no_workers(command: str) -> None:
    from pooldoctor.scan.deployment import _tokens

    assert program(_tokens(command)) is None


def test_supervisord_numprocs_and_continued_commands() -> None:
    entries = list(
        workers_in_text(
            "supervisord.conf",
            "deploy/supervisord.conf",
            _lines("""\
                [program:worker]
                command=celery -A cms worker
                    --concurrency 4
                numprocs=3
                process_name=%(program_name)s_%(process_num)02d

                [eventlistener:x]
                command=gunicorn -w 99 x
            """),
        )
    )

    [entry] = entries
    assert (entry.line, entry.deployment, entry.processes, entry.copies_by) == (
        2,
        HOST,
        12,
        "numprocs 3",
    )


def test_systemd_reads_exec_start_only() -> None:
    lines = _lines("""\
        [Service]
        EnvironmentFile=/etc/conf.d/celery
        ExecStart=/bin/sh -c '${CELERY_BIN} -A cms multi start 4 -c 2'
        ExecStop=/bin/sh -c '${CELERY_BIN} multi stopwait 4'
        ExecReload=/bin/sh -c '${CELERY_BIN} -A cms multi restart 4 -c 2'
    """)

    [entry] = workers_in_text("celery.service", "celery.service", lines)

    assert (entry.line, entry.processes, entry.program.arithmetic) == (
        3,
        8,
        "celery multi start 4 groups x -c2",
    )


def test_procfile_and_heroku_yml() -> None:
    procfile = ["web: gunicorn cms.wsgi -w 3", "release: python manage.py migrate", "worker: "
                "celery -A cms worker -c 4"]  # fmt: skip
    heroku = _lines("""\
        build:
          docker:
            web: Dockerfile
        run:
          web: gunicorn cms.wsgi -w 2
          worker:
            command:
              - celery -A cms worker -c 5
    """)

    from_procfile = list(workers_in_text("Procfile", "Procfile", procfile))
    from_yml = list(workers_in_text("heroku.yml", "heroku.yml", heroku))

    assert [(e.line, e.processes, e.deployment) for e in from_procfile] == [
        (1, 3, HEROKU),
        (3, 4, HEROKU),
    ]
    assert [(e.line, e.processes) for e in from_yml] == [(5, 2), (8, 5)]


def test_dockerfile_final_stage_entrypoint_and_cmd() -> None:
    lines = _lines("""\
        FROM python:3.12 AS build
        CMD ["celery", "-A", "cms", "worker", "-c", "99"]
        FROM python:3.12-slim
        ENTRYPOINT ["gunicorn"]
        CMD ["cms.wsgi", \\
             "--workers", "6"]
    """)

    [entry] = workers_in_text("Dockerfile", "Dockerfile", lines)

    assert (entry.line, entry.program.name, entry.processes) == (4, "gunicorn", 6)


def test_compose_block_list_command() -> None:
    lines = _lines("""\
        version: "3.9"
        services:
          worker:
            image: cms
            command:
              - celery
              - -A
              - cms
              - worker
              - -c
              - "6"
            deploy:
              mode: replicated
              replicas: 2
        volumes:
          data: {}
    """)

    [entry] = workers_in_text("docker-compose.yml", "docker-compose.yml", lines)

    assert (entry.line, entry.processes, entry.copies_by) == (5, 12, "replicas 2")


def test_budgets() -> None:
    compose = ["    command: postgres -c max_connections=250 -c superuser_reserved_connections=2"]
    conf = ["# max_connections = 5", "max_connections = 400\t# more", "port = 5432"]

    [from_compose] = budgets_in_text("compose.yml", "compose.yml", compose)
    [from_conf] = budgets_in_text("postgresql.conf", "db/postgresql.conf", conf)

    assert (from_compose.max_connections, from_compose.reserved) == (250, 2)
    assert (from_conf.line, from_conf.max_connections, from_conf.reserved) == (2, 400, None)
