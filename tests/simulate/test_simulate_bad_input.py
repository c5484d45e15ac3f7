"""Bad input to ``pooldoctor simulate``: one clear line, the documented exit code, no traceback,
no report, and no worker started."""

from __future__ import annotations

import importlib.util

import pytest

from .sim import CELERYPROJ, LEAKY, Sim, simulate


def _fails(sim: Sim, code: int, *expected: str) -> str:
    assert sim.code == code, (sim.stdout, sim.stderr)
    assert sim.stdout == ""
    assert "Traceback" not in sim.stderr
    lines = [line for line in sim.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, sim.stderr
    for text in expected:
        assert text in lines[0]
    assert sim.workers_seen == frozenset()
    return lines[0]


def _simulate(database_url: str, *args: str) -> Sim:
    return simulate(database_url, "--settings", "mysite.settings", "--modes", "async-to-sync",
                    "--workers", "2", "--tasks", "4", *args, cwd=LEAKY)  # fmt: skip


def test_gevent_pool_without_gevent(sim_database_url: str) -> None:
    if importlib.util.find_spec("gevent") is not None:
        pytest.skip("gevent is installed here: the missing-gevent error cannot happen")
    _fails(_simulate(sim_database_url, "--pool", "gevent"), 2,
           "--pool gevent needs gevent", "pip install gevent")  # fmt: skip


def test_app_module_missing(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--app", "nomodule:app"), 3,
           "--app nomodule:app", "cannot import module 'nomodule'")  # fmt: skip


def test_app_attribute_missing(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--app", "mysite.celeryapp:nope"), 3,
           "'mysite.celeryapp' has no attribute 'nope'")  # fmt: skip


def test_app_that_is_not_a_celery_app(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--pythonpath", str(CELERYPROJ), "--app",
                     "celeryproj.handlers:discard_inherited_pool"), 3,
           "is a function, not a Celery app")  # fmt: skip


def test_app_without_attribute_is_a_usage_error(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--app", "mysite.celeryapp"), 2, "is not MODULE:ATTR")


def test_unreachable_broker_fails_fast(sim_database_url: str) -> None:
    # GIVEN a broker URL nothing listens on (a worker would retry it for ever)
    sim = _simulate(sim_database_url, "--broker", "redis://127.0.0.1:1/0")
    # THEN one line within seconds, not a worker waiting out its start-up timeout
    _fails(sim, 3, "--broker redis://127.0.0.1:1/0: cannot connect")
    assert sim.seconds < 15


def test_unknown_runner(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--runner", "nope"), 2,
           "unknown runner 'nope'", "celery, django-tasks")  # fmt: skip


def test_a_pool_the_runner_does_not_have(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--runner", "rq", "--pool", "prefork"), 2,
           "--pool prefork is not a kind of RQ worker", "fork, simple")  # fmt: skip


def test_a_celery_pool_name_that_does_not_exist(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--pool", "fork"), 2,
           "--pool 'fork' is not a Celery pool")  # fmt: skip


def test_prefork_where_the_runner_does_not_fork(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--runner", "django-tasks", "--prefork"), 2,
           "--prefork: no kind of Django's Tasks worker forks")  # fmt: skip


def test_prefork_with_a_pool_that_does_not_fork(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--runner", "rq", "--prefork", "--pool", "simple"), 2,
           "--pool simple does not fork")  # fmt: skip


def test_celery_options_with_another_runner(sim_database_url: str) -> None:
    _fails(_simulate(sim_database_url, "--runner", "rq", "--django-fixup", "on"), 2,
           "--django-fixup apply to Celery workers, not to --runner rq")  # fmt: skip


def test_a_queue_in_the_database_is_not_written_without_permission(sim_database_url: str) -> None:
    # GIVEN Django's Tasks with db_worker, whose queue rows live in the project's own database
    line = _fails(_simulate(sim_database_url, "--runner", "django-tasks"), 2,
                  "--runner django-tasks keeps its queue in the project's database")  # fmt: skip
    # THEN the way out is named: a throwaway server, or an explicit permission
    assert "--database embedded" in line and "--allow-writes" in line
