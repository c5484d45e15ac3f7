"""Every built-in mode gets the verdict that an independent measurement gives.

The oracle (tests/oracle.py) reads only psycopg_pool's counters or the server's sessions with the
garbage collector off; pooldoctor reads its own census. They must agree, with a pool, without a
pool, and with persistent connections (CONN_MAX_AGE > 0, where close_old_connections() leaves a
young connection open).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FIXTURES, PROJECTS, by_subject, check_json

from pooldoctor.core.probes import all_modes

ORACLE = PROJECTS.parent / "oracle.py"
sys.path.insert(0, str(PROJECTS.parent))
from oracle import verdict as oracle_verdict  # noqa: E402

CONFIGURATIONS = {
    "pool": {"POOL": "1"},
    "no-pool": {"CONN_MAX_AGE": "0"},
    "persistent": {"CONN_MAX_AGE": "60"},
}


def _oracle(
    subject: str,
    env: dict[str, str],
    database_url: str,
    project: Path = PROJECTS / "extras",
    settings: str = "extras.settings",
) -> str:
    proc = subprocess.run(
        [sys.executable, str(ORACLE), subject, "12"],
        cwd=project,
        env={
            **os.environ,
            **env,
            "DJANGO_SETTINGS_MODULE": settings,
            "PYTHONPATH": str(project),
            "DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    return oracle_verdict(result["series"], result["pool_timeout"])


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_every_mode_matches_the_independent_measurement(config: str, database_url: str) -> None:
    env = CONFIGURATIONS[config]
    # GIVEN the extras project configured with a pool, without one, or with persistent connections,
    #   and every task mode named (the worker-only ones included; the request modes have their
    #   own comparison, in tests/test_request_modes.py)
    modes = [m.name for m in all_modes() if not m.request]
    # (a mode the installed asgiref cannot run, owned-executor without
    # ThreadSensitiveContext(executor=...), is skipped: the oracle has nothing to compare)
    skipped = {m.name for m in all_modes() if not m.request and m.unavailable() is not None}
    _, report = check_json("--settings", "extras.settings", "--modes", ",".join(modes),
                           cwd=PROJECTS / "extras", database_url=database_url, env=env)  # fmt: skip
    # WHEN the oracle measures each mode on its own
    measured = [m for m in modes if m not in skipped]
    with ThreadPoolExecutor(max_workers=2) as pool:
        expected = dict(
            zip(measured, pool.map(lambda m: _oracle(m, env, database_url), measured), strict=True)
        )
    expected.update(dict.fromkeys(skipped, "skipped"))
    # THEN pooldoctor's verdict is the oracle's, mode by mode
    got = {name: r["verdict"] for name, r in by_subject(report).items()}
    assert got == expected


@pytest.mark.parametrize("fixture", ["leaky", "fixed"])
def test_fixture_wrappers_match_the_independent_measurement(
    fixture: str, database_url: str
) -> None:
    project = FIXTURES / fixture
    wrappers = ["mysite.celeryapp:async_task_wrapper", "mysite.celeryapp:async_task()"]
    _, report = check_json(
        "--settings", "mysite.settings", "--modes", "async-to-sync",
        *(arg for w in wrappers for arg in ("--wrapper", w)),
        cwd=project, database_url=database_url,
    )  # fmt: skip
    expected = {
        w: _oracle(w, {}, database_url, project=project, settings="mysite.settings")
        for w in wrappers
    }
    got = {w: by_subject(report)[w]["verdict"] for w in wrappers}
    assert got == expected
    assert set(got.values()) == ({"leak"} if fixture == "leaky" else {"clean"})
