"""``check --task`` on RQ job functions: run in-process as RQ's worker runs them (``Job.perform``,
after django-rq's ``reset_db_connections``), measured on real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import by_subject, check_json, pooldoctor

from pooldoctor.errors import PooldoctorError, UsageError
from pooldoctor.hosts import host_for
from pooldoctor.hosts.rq import RQHost, django_integration

from .conftest import RQPROJ, SETTINGS


def plain(n: int) -> int:
    return n + 1


async def doubled(n: int) -> int:
    return n * 2


@pytest.fixture(scope="module")
def checked(rq_database_url: str) -> tuple[int, dict[str, Any]]:
    return check_json(*SETTINGS, "--task", "rqproj.jobs.count_databases",
                      "--task", "rqproj.jobs.leaky_count", "--tasks", "6", cwd=RQPROJ,
                      database_url=rq_database_url,
                      env={"DATABASE_URL": rq_database_url})  # fmt: skip


def test_a_sync_job_keeps_its_connection_between_jobs_because_django_rq_closes_nothing(
    checked: tuple[int, dict[str, Any]],
) -> None:
    # django-rq closes Django's connections once, before the worker starts, never around a job:
    # a worker that runs its jobs itself (SimpleWorker, as check does) keeps the first job's
    # connection checked out on its main thread for good (one slot, not one per job).
    _, report = checked
    result = by_subject(report)["rqproj.jobs.count_databases"]
    assert result["verdict"] == "pinned", result["summary"]
    assert "held by MainThread" in result["summary"]
    assert result["lost_slots"] == 0


def test_a_job_through_the_leaking_recipe_is_a_leak_named_at_the_projects_line(
    checked: tuple[int, dict[str, Any]],
) -> None:
    code, report = checked
    result = by_subject(report)["rqproj.jobs.leaky_count"]
    assert result["verdict"] == "leak", result["summary"]
    assert result["lost_slots"] >= 3
    assert ("rqproj/jobs.py", 17) in {(s["file"], s["line"]) for s in result["leak_sites"]}
    assert code == 1


def test_an_rq_job_function_is_claimed_by_the_rq_host_and_a_plain_function_is_not() -> None:
    from redis import Redis
    from rq.decorators import job

    assert host_for(plain).name == "inprocess"
    # RQ's @job returns the function itself, with enqueue/delay added: a module-level function,
    # found by its dotted name as the worker finds it.
    decorated = job("default", connection=Redis())(plain)
    try:
        assert host_for(decorated).name == "rq"
        assert RQHost().runner(decorated)(41) == 42  # Job.perform, no Redis reached
    finally:
        del plain.enqueue, plain.delay  # type: ignore[attr-defined]


def test_an_async_job_is_awaited_as_rqs_worker_does() -> None:
    from redis import Redis
    from rq.decorators import job

    task = job("default", connection=Redis())(doubled)
    assert RQHost().refusal(task) is None
    assert RQHost().runner(task)(21) == 42


def test_the_embedded_broker_is_refused_with_the_redis_url_to_pass() -> None:
    with pytest.raises(UsageError) as raised:
        RQHost().check_broker("embedded")
    assert "redis://127.0.0.1:6379/N" in str(raised.value)


def test_django_rqs_integration_is_read_from_its_code() -> None:
    text = django_integration()
    assert "rqworker" in text and "reset_db_connections" in text
    assert "leaves the pool open" in text  # it calls close(), never close_pool()
    assert "nothing closes connections around each job" in text


def test_a_work_horse_that_died_mid_job_is_read_off_rqs_own_log_line() -> None:
    line = "12:00:01 Work horse killed for job 0f3c: retpid=4242, ret_val=9\n"
    assert RQHost().children_died(f"noise\n{line}") == [
        {"name": "work horse (job 0f3c)", "pid": "4242", "how": "killed by SIGKILL"}
    ]


def test_an_unreachable_redis_is_one_line_before_any_worker_starts() -> None:
    with pytest.raises(PooldoctorError) as raised:
        RQHost().check_broker("redis://127.0.0.1:1/3")
    assert "cannot reach Redis" in str(raised.value)


def test_simulate_without_a_broker_tells_which_url_to_pass(rq_database_url: str) -> None:
    proc = pooldoctor("simulate", "--runner", "rq", *SETTINGS, "--database", rq_database_url,
                      cwd=RQPROJ, env={"DATABASE_URL": rq_database_url})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--broker redis://127.0.0.1:6379/N" in proc.stderr
