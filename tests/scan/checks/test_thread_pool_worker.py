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
        (
            "compose.yaml",
            'services:\n  worker:\n    command: ["celery", "-A", "mysite", "worker", '
            '"--pool", "threads", "--concurrency", "20"]\n',
            3,
            52,
            "threads",
        ),
        (
            "heroku.yml",
            "run:\n  worker:\n    command:\n      - celery -A mysite worker -P threads\n",
            4,
            33,
            "threads",
        ),
        (
            "supervisord.conf",
            "[program:worker]\ncommand=celery -A mysite worker --pool=eventlet\n",
            2,
            33,
            "eventlet",
        ),
        (
            "deploy/worker.service",
            "[Service]\nExecStart=/venv/bin/celery -A mysite worker -P threads\n",
            2,
            45,
            "threads",
        ),
        (
            "k8s/worker.yaml",
            "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
            '        - command: ["celery", "-A", "mysite", "worker"]\n'
            "          args:\n            - -P\n            - threads\n",
            6,
            11,
            "threads",
        ),
        ("Makefile", "worker:\n\tcelery -A mysite worker -P threads\n", 2, 26, "threads"),
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
        {"mysite/settings.py": POOL, "Procfile": "beat: celery -A mysite beat -P threads\n"},
        {
            "mysite/settings.py": POOL,
            ".github/workflows/ci.yml": "steps:\n  - run: celery -A mysite worker -P threads\n",
        },
        {
            "mysite/settings.py": POOL,
            "k8s/config.yaml": "kind: ConfigMap\ndata:\n  command: celery worker -P threads\n",
        },
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
        "beat",
        "ci-workflow",
        "not-a-workload",
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


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "worker: celery -A mysite worker --pool threads --concurrency 20\n",
            "; --pool threads --concurrency 20 runs up to 20 tasks at once on one pool, and "
            "those past its max_size wait for a connection",
        ),
        (
            "worker: celery -A mysite worker -P gevent\n",
            " (--pool gevent, --concurrency not stated: Celery runs as many tasks at once as "
            "the host has CPUs, all on that one pool)",
        ),
    ],
)
def test_the_command_s_concurrency_is_in_the_message(
    tmp_path: Path, scan_source: ScanSource, text: str, said: str
) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": POOL, "Procfile": text}, "PD312")

    assert finding.message.endswith(f"that nothing resets{said}")


def test_each_command_of_a_file_is_flagged_on_its_own_line(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    procfile = (
        "web: gunicorn mysite.wsgi\n"
        "fast: celery -A mysite worker -Q fast \\\n"
        "  -c 8\n"
        "io: celery -A mysite worker -Q io -P gevent -c 200\n"
        "slow: celery -A mysite worker -P threads -Q slow\n"
    )
    found = scan_source(tmp_path, {"mysite/settings.py": POOL, "Procfile": procfile}, "PD312")

    assert [(f.line, f.column) for f in found] == [(4, 35), (5, 31)]
    assert "--concurrency 200" in found[0].message
    assert "--concurrency not stated" in found[1].message
