"""Which server a deployment file's command runs, and whether it serves ASGI."""

from __future__ import annotations

import pytest

from pooldoctor.scan.deployment import command_server, servers_in_text


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
