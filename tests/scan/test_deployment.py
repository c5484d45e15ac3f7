"""Which server a deployment file's command runs, and whether it serves ASGI."""

from __future__ import annotations

import pytest

from pooldoctor.scan.deployment import (
    command_server,
    preloads_in_text,
    servers_in_text,
    workers_in_text,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("web: uvicorn mysite.asgi:application --port $PORT", ("uvicorn", True)),
        ('CMD ["daphne", "-b", "0.0.0.0", "mysite.asgi:application"]', ("daphne", True)),
        ("command: hypercorn mysite.asgi:application", ("hypercorn", True)),
        ("exec granian --interface asgi mysite.asgi:application", ("granian", True)),
        ("exec granian --interface=wsgi mysite.wsgi:application", ("granian", False)),
        ("granian mysite.asgi:application", ("granian", False)),
        ("uvicorn mysite.wsgi:application --interface wsgi", ("uvicorn", False)),
        ("hypercorn mysite.wsgi:application", ("hypercorn", False)),
        (
            "gunicorn -k uvicorn.workers.UvicornWorker mysite.asgi:application",
            ("gunicorn -k uvicorn.workers.UvicornWorker", True),
        ),
        ("gunicorn mysite.wsgi -w 4", ("gunicorn", False)),
        ("uwsgi --module mysite.wsgi", ("uwsgi", False)),
        ("python manage.py runserver", None),
        ("pip install uvicorn-worker", None),
        ("ignore = uvicorn.*", None),
    ],
)
def test_command_server(line: str, expected: tuple[str, bool] | None) -> None:
    assert command_server(line) == expected


def test_dependencies_and_lock_files() -> None:
    pins = ["django==6.1", "uvicorn-worker==0.3.0", "# daphne==4", "granian[reload]>=1.6"]
    found = [(s.line, s.server, s.asgi) for s in servers_in_text("requirements.txt", "r", pins)]
    assert found == [(2, "uvicorn", True), (4, "granian", False)]
    assert not any(s.command for s in servers_in_text("requirements.txt", "r", pins))
    lock = ['name = "uvicorn"', 'version = "0.30.6"']
    assert list(servers_in_text("poetry.lock", "poetry.lock", lock)) == []


def test_an_install_line_is_a_dependency_not_a_command() -> None:
    lines = ["FROM python:3.12", "RUN pip install --no-cache-dir uvicorn[standard]==0.30 django"]
    [served] = servers_in_text("Dockerfile", "Dockerfile", lines)

    assert (served.line, served.server, served.asgi, served.command) == (2, "uvicorn", True, False)


# Every kind of deployment file, as (file, text) -> the workers it starts, as (line, program,
# pool, concurrency, processes), and the servers it runs, as (line, server, asgi).
DEPLOYMENTS = [
    (
        "Procfile",
        "web: gunicorn mysite.wsgi -w 3\nworker: celery -A mysite worker --pool threads -c 20\n",
        [(1, "gunicorn", "", None, 3), (2, "celery worker", "threads", 20, 1)],
        [(1, "gunicorn", False)],
    ),
    (
        "heroku.yml",
        "build:\n  docker:\n    web: Dockerfile\nrun:\n"
        "  web: uvicorn mysite.asgi:application --workers 2\n"
        "  worker:\n    command:\n      - celery -A mysite worker -P gevent -c 50\n"
        "    image: web\n",
        [(5, "uvicorn", "", None, 2), (8, "celery worker", "gevent", 50, 1)],
        [(5, "uvicorn", True)],
    ),
    (
        "Dockerfile",
        'FROM python:3.12\nCMD ["celery", "-A", "mysite", "worker", "-P", "threads", "-c", "8"]\n',
        [(2, "celery worker", "threads", 8, 1)],
        [],
    ),
    (
        "Dockerfile",
        "FROM python:3.12\nCMD celery -A mysite worker --pool=eventlet --concurrency=64\n",
        [(2, "celery worker", "eventlet", 64, 1)],
        [],
    ),
    (
        "Dockerfile",
        'FROM python:3.12\nENTRYPOINT ["gunicorn"]\n'
        'CMD ["-k", "uvicorn.workers.UvicornWorker", "-w", "4", "mysite.asgi:application"]\n',
        [(2, "gunicorn", "", None, 4)],
        [(2, "gunicorn -k uvicorn.workers.UvicornWorker", True)],
    ),
    (
        "docker-compose.yml",
        "services:\n  worker:\n    command: celery -A mysite worker --pool threads "
        "--concurrency 20\n    deploy:\n      replicas: 2\n"
        "  web:\n    command:\n      - daphne\n      - mysite.asgi:application\n",
        [(3, "celery worker", "threads", 20, 2), (7, "daphne", "", None, 1)],
        [(8, "daphne", True)],
    ),
    (
        "compose.yaml",
        'services:\n  worker:\n    command: ["celery", "-A", "mysite", "worker", "-P", "gevent"]\n',
        [(3, "celery worker", "gevent", None, 1)],
        [],
    ),
    (
        "supervisord.conf",
        "[program:worker]\ncommand=celery -A mysite worker -P eventlet -c 30\nnumprocs=2\n"
        "[program:web]\ncommand=gunicorn -k uvicorn.workers.UvicornWorker mysite.asgi -w 4\n",
        [(2, "celery worker", "eventlet", 30, 2), (5, "gunicorn", "", None, 4)],
        [(5, "gunicorn -k uvicorn.workers.UvicornWorker", True)],
    ),
    (
        "worker.service",
        "[Service]\nExecStart=/venv/bin/celery -A mysite worker \\\n  --pool threads -c 10\n",
        [(2, "celery worker", "threads", 10, 1)],
        [],
    ),
    (
        "k8s/worker.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 3\n  template:\n    spec:\n"
        "      containers:\n        - name: worker\n"
        '          command: ["celery", "-A", "mysite"]\n'
        "          args:\n            - worker\n            - --pool=threads\n"
        '            - "--concurrency"\n            - "20"\n',
        [(9, "celery worker", "threads", 20, 3)],
        [],
    ),
    (
        "deploy/web.yml",
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n"
        "        command:\n        - gunicorn\n        - -k\n"
        "        - uvicorn.workers.UvicornWorker\n"
        "        - mysite.asgi:application\n",
        [(7, "gunicorn", "", None, 1)],
        [(7, "gunicorn -k uvicorn.workers.UvicornWorker", True)],
    ),
    (
        "bin/worker.sh",
        "#!/bin/sh\nset -e\npython manage.py migrate\nexec celery -A mysite worker \\\n"
        "  --pool gevent -c 100\n",
        [(4, "celery worker", "gevent", 100, 1)],
        [],
    ),
    (
        "Makefile",
        "worker:\n\tcelery -A mysite worker -P threads -c 4\nX = celery worker -P gevent\n",
        [(2, "celery worker", "threads", 4, 1)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("relative", "text", "workers", "servers"),
    DEPLOYMENTS,
    ids=[f"{r}-{i}" for i, (r, *_) in enumerate(DEPLOYMENTS)],
)
def test_every_deployment_file_feeds_workers_and_servers(
    relative: str,
    text: str,
    workers: list[tuple[int, str, str, int | None, int]],
    servers: list[tuple[int, str, bool]],
) -> None:
    name, lines = relative.rsplit("/", 1)[-1], text.splitlines()

    found = [
        (w.line, w.program.name, w.program.pool, w.program.concurrency, w.processes)
        for w in workers_in_text(name, relative, lines)
    ]
    served = [(s.line, s.server, s.asgi) for s in servers_in_text(name, relative, lines)]

    assert found == workers
    assert served == servers
    assert all(s.command for s in servers_in_text(name, relative, lines))


@pytest.mark.parametrize(
    ("relative", "text", "line"),
    [
        ("Procfile", "web: gunicorn mysite.wsgi --preload\n", 1),
        ("heroku.yml", "run:\n  web: gunicorn mysite.wsgi --preload\n", 2),
        ("Dockerfile", 'CMD ["gunicorn", "--preload", "mysite.wsgi"]\n', 1),
        (
            "compose.yml",
            "services:\n  web:\n    command:\n      - gunicorn\n      - --preload\n",
            5,
        ),
        ("web.service", "[Service]\nExecStart=gunicorn --preload mysite.wsgi\n", 2),
        ("k8s/web.yaml", "kind: Pod\nspec:\n  containers:\n  - args: [gunicorn, --preload]\n", 4),
    ],
)
def test_every_deployment_file_feeds_preloads(relative: str, text: str, line: int) -> None:
    assert [n for n, _ in preloads_in_text(text.splitlines())] == [line]
