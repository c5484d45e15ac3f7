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
