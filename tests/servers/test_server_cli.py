"""simulate --server's command line: options that belong to Celery workers, or only to a server,
are one line with exit 2; a server that is not installed says what to install."""

from __future__ import annotations

import pytest
from conftest import pooldoctor

from pooldoctor.commands.simulate_server import server_for
from pooldoctor.errors import MissingExtraError
from pooldoctor.hosts.servers import Server, ServerOptions
from pooldoctor.hosts.servers.registry import servers

from .serve import WEBPROJ, serve

BASE = ("simulate", "--settings", "webproj.settings")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--server", "gunicorn", "--pool", "threads"), "--pool apply to Celery workers"),
        (("--server", "uvicorn", "--broker", "redis://x"), "--broker apply to Celery workers"),
        (("--server", "daphne", "--preload"), "--preload apply to --server gunicorn only"),
        (("--preload",), "--preload only apply with --server"),
        (("--url", "/x/"), "--url only apply with --server"),
        (("--server", "gunicorn", "--url", "x/"), "--url 'x/' is not a path"),
    ],
)
def test_options_that_do_not_apply_are_one_line(args: tuple[str, ...], message: str) -> None:
    proc = pooldoctor(*BASE, *args, "--database", "postgresql://u:secret@127.0.0.1/db",
                      cwd=WEBPROJ)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "secret" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_server_that_is_not_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Server, "version", lambda self: "not installed")
    options = ServerOptions(server="daphne", app=None, workers=1, preload=False,
                            worker_class="sync", urls=(), requests=1, concurrency=1,
                            task_timeout=1.0)  # fmt: skip
    with pytest.raises(MissingExtraError) as raised:
        server_for(options)
    assert raised.value.exit_code == 3
    assert str(raised.value) == (
        "--server daphne needs daphne, which is not installed (pip install 'pooldoctor[servers]')"
    )


def test_each_server_says_what_it_serves() -> None:
    options = ServerOptions(server="gunicorn", app=None, workers=3, preload=True,
                            worker_class="gthread", urls=(), requests=1, concurrency=1,
                            task_timeout=1.0)  # fmt: skip
    table = servers()
    assert sorted(table) == ["daphne", "gunicorn", "uvicorn"]
    assert table["gunicorn"].interface(options) == "wsgi"
    assert table["gunicorn"].forks(options)
    assert table["gunicorn"].concurrency(options) == "-k gthread -w 3 --threads 4 --preload"
    assert table["uvicorn"].interface(options) == "asgi" and not table["uvicorn"].forks(options)
    assert table["daphne"].processes(options) == 1
    assert table["gunicorn"].fix() is not None and table["daphne"].fix() is None


def test_an_application_that_fails_to_import_is_one_line_at_once(srv_database_url: str) -> None:
    # GIVEN an --app whose module raises at import, under uvicorn (which restarts its workers)
    run = serve(srv_database_url, "--settings", "webproj.settings", "--server", "uvicorn",
                "--workers", "2", "--app", "webproj.broken_asgi:application")  # fmt: skip
    # THEN one line saying why, exit 3, without waiting for the start-up limit, nothing left
    assert run.code == 3, run
    assert run.stderr.strip() == (
        "pooldoctor: error: uvicorn did not start for echo: the application did not load: "
        "RuntimeError: the settings of this deploy are broken (check --app, and that the "
        "application imports with these settings)"
    )
    assert run.seconds < 30
    assert run.left == {}
