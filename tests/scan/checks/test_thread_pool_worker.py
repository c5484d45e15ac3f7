"""PD312: a threads/gevent/eventlet Celery worker with a Django database pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'


@pytest.mark.parametrize(
    ("name", "source", "line", "column", "kind"),
    [
        ("mysite/celery_config.py", 'worker_pool = "threads"\n', 1, 15, "threads"),
        ("mysite/settings.py", POOL + 'CELERY_WORKER_POOL = "gevent"\n', 2, 22, "gevent"),
        (
            "mysite/celery.py",
            'from celery import Celery\n\napp = Celery()\napp.conf.worker_pool = "eventlet"\n',
            4,
            24,
            "eventlet",
        ),
        (
            "mysite/celery.py",
            'app.conf.update(\n    broker_url=BROKER,\n    worker_pool="threads",\n)\n',
            3,
            17,
            "threads",
        ),
        ("mysite/celery.py", 'app.conf.update({"worker_pool": "gevent"})\n', 1, 33, "gevent"),
        ("mysite/celery.py", 'app.conf["worker_pool"] = "threads"\n', 1, 27, "threads"),
        (
            "mysite/celery.py",
            'app.conf.worker_pool = "celery.concurrency.thread:TaskPool"\n',
            1,
            24,
            "thread",
        ),
    ],
)
def test_python_settings_are_flagged(
    tmp_path: Path,
    scan_source: ScanSource,
    name: str,
    source: str,
    line: int,
    column: int,
    kind: str,
) -> None:
    files = {"mysite/settings.py": POOL} | {name: source}
    [finding] = scan_source(tmp_path, files, "PD312")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD312",
        name,
        line,
        column,
    )
    assert finding.message == (
        f"Celery worker pool {kind!r} with a database pool: Celery's Django fix-up closes the "
        "pool only in prefork workers, so all tasks in this worker share one process-wide pool "
        "that nothing resets"
    )


@pytest.mark.parametrize(
    ("name", "text", "line", "column", "kind"),
    [
        ("Procfile", "worker: celery -A mysite worker -P threads -c 16\n", 1, 33, "threads"),
        ("Procfile", "worker: celery -A mysite worker -Pgevent\n", 1, 33, "gevent"),
        ("Procfile", "worker: celery -A mysite worker --pool=gevent -c 100\n", 1, 33, "gevent"),
        ("bin/worker.sh", "exec celery -A mysite worker \\\n  --pool eventlet\n", 2, 3, "eventlet"),
        (
            "Dockerfile",
            'CMD ["celery", "-A", "mysite", "worker", "--pool", "threads"]\n',
            1,
            43,
            "threads",
        ),
        (
            "docker-compose.yml",
            "services:\n  worker:\n    command: celery -A mysite worker -P gevent\n",
            3,
            38,
            "gevent",
        ),
    ],
)
def test_command_lines_are_flagged(
    tmp_path: Path,
    scan_source: ScanSource,
    name: str,
    text: str,
    line: int,
    column: int,
    kind: str,
) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": POOL, name: text}, "PD312")

    assert (finding.file, finding.line, finding.column) == (name, line, column)
    assert f"Celery worker pool {kind!r} with a database pool" in finding.message


@pytest.mark.parametrize(
    "files",
    [
        {"mysite/celery.py": 'app.conf.worker_pool = "threads"\n'},
        {
            "mysite/settings.py": POOL.replace('{"timeout": 5}', "False"),
            "Procfile": "worker: celery -A mysite worker -P gevent\n",
        },
        {"mysite/settings.py": POOL, "mysite/celery.py": 'app.conf.worker_pool = "prefork"\n'},
        {"mysite/settings.py": POOL, "Procfile": "worker: celery -A mysite worker -P prefork\n"},
        {"mysite/settings.py": POOL, "Procfile": "worker: celery -A mysite worker -c 4\n"},
        {"mysite/settings.py": POOL, "Procfile": "# worker: celery -A mysite worker -P gevent\n"},
        {"mysite/settings.py": POOL, "mysite/threads.py": 'NAME = "threads"\n'},
        {"mysite/settings.py": POOL, "Procfile": "web: gunicorn -k gevent mysite.wsgi\n"},
    ],
    ids=[
        "no-pool",
        "pool-off",
        "prefork-setting",
        "prefork-option",
        "default-pool",
        "commented-out",
        "other-string",
        "gunicorn-gevent",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD312") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL + 'CELERY_WORKER_POOL = "gevent"  # pooldoctor: ignore[PD312]\n',
        "Procfile": "worker: celery -A mysite worker -P threads  # pooldoctor: ignore[PD312]\n",
    }
    assert scan_source(tmp_path, files, "PD312") == []
