"""Findings with stable codes, from hand-built settings and results: no Django, no database."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pooldoctor.core import findings
from pooldoctor.core.findings import audit_config, measured, pool_settings
from pooldoctor.core.model import (
    Finding,
    Fix,
    PoolStats,
    Severity,
    StopReason,
    SubjectResult,
    SubjectRun,
    TaskCensus,
    ThreadConnection,
    Verdict,
)
from pooldoctor.core.verdict import subject_result, symptoms_of

FIX_SUBJECT = "async_to_sync"


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, f"expected one {code} in {codes(findings)}"
    return matching[0]


# --- pool_settings -----------------------------------------------------------------------------


def test_pool_true_means_psycopg_pool_defaults() -> None:
    # GIVEN OPTIONS["pool"] = True
    # WHEN the settings are filled in
    # THEN they are psycopg_pool's: min 4, max = min, 30 s timeout
    assert pool_settings(True) == {"min_size": 4, "max_size": 4, "timeout": 30.0}


def test_pool_dict_is_merged_over_the_defaults() -> None:
    # GIVEN a pool dict that sets some keys, and one psycopg_pool option pooldoctor does not know
    given = {"max_size": 20, "timeout": 5, "check": "callable"}

    # WHEN the settings are filled in
    settings = pool_settings(given)

    # THEN the given keys win, the others are defaults, and the input is left alone
    assert settings == {"min_size": 4, "max_size": 20, "timeout": 5, "check": "callable"}
    assert given == {"max_size": 20, "timeout": 5, "check": "callable"}


@pytest.mark.parametrize(
    ("given", "max_size"),
    [({"min_size": 2}, 2), ({"min_size": 8, "max_size": None}, 8), ({"timeout": 5}, 4)],
)
def test_pool_max_size_none_means_min_size(given: dict[str, Any], max_size: int) -> None:
    # GIVEN a pool dict without max_size (or with max_size None)
    # WHEN the settings are filled in
    # THEN max_size is min_size, as psycopg_pool does
    settings = pool_settings(given)
    assert settings is not None
    assert settings["max_size"] == max_size


@pytest.mark.parametrize("falsy", [None, False, {}, 0])
def test_pool_falsy_means_no_pool(falsy: Any) -> None:
    # GIVEN no pool option, or a falsy one (Django builds no pool then)
    # WHEN the settings are filled in
    # THEN there is no pool
    assert pool_settings(falsy) is None


# --- audit_config ------------------------------------------------------------------------------


def audit(
    pool: dict[str, Any] | None = None,
    *,
    max_size: int = 10,
    timeout: float = 5.0,
    conn_max_age: int | None = 0,
    health_checks: bool = True,
    max_connections: int = 100,
    reserved: int = 3,
) -> list[Finding]:
    """The audit of a pool with the given settings (a safe one unless told otherwise)."""
    settings = (
        pool if pool is not None else {"min_size": 1, "max_size": max_size, "timeout": timeout}
    )
    return audit_config(settings, conn_max_age, health_checks, max_connections, reserved)


def test_safe_pool_has_no_findings() -> None:
    # GIVEN max_size 10 (9 processes fit in 97 usable), 5 s timeout, health checks on
    # WHEN audited
    # THEN nothing is found
    assert audit() == []


def test_pd102_error_when_not_even_one_process_fits() -> None:
    # GIVEN a pool bigger than the server's 97 usable connections
    findings = audit(max_size=98)

    # WHEN audited
    finding = only(findings, "PD102")

    # THEN it is an error that shows the arithmetic
    assert finding.severity is Severity.ERROR
    assert "only 0 process(es) fit" in finding.message
    assert "97 usable connections (max_connections 100 - 3 reserved)" in finding.message
    assert "under 97" in finding.fix


@pytest.mark.parametrize(("max_size", "fits"), [(97, 1), (48, 2), (25, 3)])
def test_pd102_warning_when_fewer_than_four_processes_fit(max_size: int, fits: int) -> None:
    # GIVEN a pool that fits 1 to 3 times into 97 usable connections
    # WHEN audited
    finding = only(audit(max_size=max_size), "PD102")

    # THEN it is a warning with the count of processes that fit
    assert finding.severity is Severity.WARNING
    assert f"pool max_size {max_size} per process: only {fits} process(es) fit" in finding.message


@pytest.mark.parametrize("max_size", [24, 10, 1])
def test_no_pd102_when_four_or_more_processes_fit(max_size: int) -> None:
    # GIVEN a pool that fits at least 4 times (24 x 4 = 96 <= 97)
    # WHEN audited
    # THEN there is no PD102
    assert "PD102" not in codes(audit(max_size=max_size))


def test_pd102_subtracts_the_reserved_connections() -> None:
    # GIVEN 4 x 25 = 100 = max_connections, but 3 are reserved for superusers
    # WHEN audited with and without the reservation
    # THEN only the reservation makes it too big
    assert "PD102" in codes(audit(max_size=25, reserved=3))
    assert "PD102" not in codes(audit(max_size=25, reserved=0))


def test_pd103_for_a_pool_timeout_over_ten_seconds() -> None:
    # GIVEN psycopg_pool's default 30 s timeout
    findings = audit(timeout=30.0)

    # WHEN audited
    finding = only(findings, "PD103")

    # THEN it is a warning that names the timeout
    assert finding.severity is Severity.WARNING
    assert "pool timeout 30 s" in finding.message
    assert "timeout" in finding.fix


@pytest.mark.parametrize("timeout", [5.0, 10.0])
def test_no_pd103_for_a_short_timeout(timeout: float) -> None:
    # GIVEN a timeout of at most 10 s
    # WHEN audited
    # THEN there is no PD103
    assert "PD103" not in codes(audit(timeout=timeout))


def test_pd105_when_the_pool_has_no_health_checks() -> None:
    # GIVEN CONN_HEALTH_CHECKS off and no "check" in the pool options
    findings = audit(health_checks=False)

    # WHEN audited
    finding = only(findings, "PD105")

    # THEN it is reported, pointing at CONN_HEALTH_CHECKS
    assert finding.severity is Severity.INFO
    assert "CONN_HEALTH_CHECKS" in finding.fix


def test_no_pd105_when_the_pool_has_its_own_check() -> None:
    # GIVEN CONN_HEALTH_CHECKS off but a "check" callable in the pool options
    pool = {"min_size": 1, "max_size": 10, "timeout": 5.0, "check": "callable"}

    # WHEN audited
    # THEN there is no PD105
    assert "PD105" not in codes(audit(pool, health_checks=False))


def test_no_pd105_with_health_checks() -> None:
    assert "PD105" not in codes(audit(health_checks=True))


def test_defaults_from_pool_true_raise_pd103_and_pd105() -> None:
    # GIVEN OPTIONS["pool"] = True and no health checks (max 4: 24 processes fit)
    pool = pool_settings(True)

    # WHEN audited
    findings = audit(pool, health_checks=False)

    # THEN the 30 s default timeout and the missing checks are reported, the size is fine
    assert codes(findings) == ["PD103", "PD105"]


def test_pd104_for_persistent_connections_without_a_pool() -> None:
    # GIVEN no pool and CONN_MAX_AGE=60
    findings = audit_config(None, 60, False, 100, 3)

    # WHEN audited
    # THEN only PD104 is reported, naming the setting (pool rules do not apply)
    assert codes(findings) == ["PD104"]
    assert findings[0].severity is Severity.INFO
    assert "CONN_MAX_AGE=60" in findings[0].message


@pytest.mark.parametrize("conn_max_age", [0, None])
def test_nothing_without_a_pool_and_without_persistent_connections(
    conn_max_age: int | None,
) -> None:
    # GIVEN no pool and connections closed at the end of each request
    # WHEN audited, even without health checks
    # THEN nothing is found
    assert audit_config(None, conn_max_age, False, 100, 3) == []


# --- measured ----------------------------------------------------------------------------------


def pool() -> PoolStats:
    return PoolStats(
        min_size=0,
        max_size=4,
        size=1,
        available=0,
        waiting=0,
        connections_opened=1,
        timeout=5.0,
    )


def held(transaction: str) -> ThreadConnection:
    return ThreadConnection(
        thread="ThreadPoolExecutor-0_0",
        thread_role="process-wide sync_to_async executor",
        thread_alive=True,
        open=True,
        checked_out=True,
        held=True,
        transaction=transaction,
        autocommit=transaction == "idle",
        held_seconds=0.5,
        backend_pid=4242,
    )


def census(index: int, transaction: str | None = None) -> TaskCensus:
    """A census after one task; with ``transaction``, a held connection in that state."""
    connections = () if transaction is None else (held(transaction),)
    return TaskCensus(
        index=index,
        kind="ok",
        ok=True,
        error=None,
        expected_error=False,
        seconds=0.01,
        pool=pool(),
        lost=0,
        held=len(connections),
        connections=connections,
        server=None,
    )


def result(
    subject: str,
    verdict: Verdict,
    *,
    kind: str = "wrapper",
    census: tuple[TaskCensus, ...] = (),
    stop: StopReason = StopReason.DONE,
    summary: str = "what happened",
) -> SubjectResult:
    return subject_result(
        run=SubjectRun(
            subject=subject,
            kind=kind,
            description="project wrapper" if kind == "wrapper" else "a built-in mode",
            stop=stop,
            stop_detail=None,
            tasks_planned=len(census),
            census=census,
            pooled=True,
        ),
        verdict=verdict,
        summary=summary,
        lost_slots=0,
        lost_per_task=0.0,
        held_connections=0,
        tasks_until_exhaustion=None,
        symptoms=(),
    )


def test_pd201_for_a_leaking_wrapper_with_the_fix_subject() -> None:
    # GIVEN a wrapper that leaks, and a mode that measured clean here
    leaking = result("run_async_task", Verdict.LEAK, summary="lost 3 pool slots in 3 tasks")

    # WHEN the measured findings are drawn
    findings = measured([leaking], FIX_SUBJECT)

    # THEN PD201 is an error about that wrapper, and the fix points at the clean pattern
    finding = only(findings, "PD201")
    assert finding.severity is Severity.ERROR
    assert finding.subject == "run_async_task"
    assert finding.message == "run_async_task: lost 3 pool slots in 3 tasks"
    assert FIX_SUBJECT in finding.fix
    assert codes(findings) == ["PD201"]


def test_pd201_without_a_fix_subject_gives_the_general_fix() -> None:
    # GIVEN a leaking wrapper and no mode that measured clean
    # WHEN the measured findings are drawn
    finding = only(measured([result("run_async_task", Verdict.LEAK)], None), "PD201")

    # THEN the fix is the general advice, naming no subject
    assert "close the connection on the thread that ran the ORM calls" in finding.fix
    assert "None" not in finding.fix


def test_pd201_points_at_the_wrappers_own_proven_fix() -> None:
    # GIVEN a leaking wrapper whose patched source measured clean in the same run
    proven = Fix("async-to-sync", "...", applied_to="run_async_task", measured=Verdict.CLEAN,
                 diff="--- a/x.py\n+++ b/x.py\n")  # fmt: skip
    leaking = dataclasses.replace(result("run_async_task", Verdict.LEAK), fix=proven)
    # THEN PD201's fix is that diff, not the built-in mode's pattern
    finding = only(measured([leaking], FIX_SUBJECT), "PD201")
    assert finding.fix.startswith("apply the diff under its evidence (async-to-sync)")
    # AND a fix that was patched but did not measure clean is not offered as the fix
    still = dataclasses.replace(proven, measured=Verdict.LEAK)
    leaking = dataclasses.replace(leaking, fix=still)
    assert FIX_SUBJECT in only(measured([leaking], FIX_SUBJECT), "PD201").fix


def test_pd202_for_a_pinned_wrapper() -> None:
    # GIVEN a wrapper that pins a connection
    findings = measured([result("run_async_task", Verdict.PINNED)], FIX_SUBJECT)

    # WHEN the measured findings are drawn
    # THEN PD202 is a warning about it, with the same fix as a leak
    finding = only(findings, "PD202")
    assert finding.severity is Severity.WARNING
    assert finding.subject == "run_async_task"
    assert FIX_SUBJECT in finding.fix
    assert codes(findings) == ["PD202"]


def test_pd205_for_a_wrapper_that_could_not_be_measured() -> None:
    # GIVEN a wrapper that hung
    hung = result("run_async_task", Verdict.ERROR, stop=StopReason.HUNG, summary="hung: task 1")

    # WHEN the measured findings are drawn
    findings = measured([hung], FIX_SUBJECT)

    # THEN PD205 is an error with the wrapper's summary and a debugging hint
    finding = only(findings, "PD205")
    assert finding.severity is Severity.ERROR
    assert finding.subject == "run_async_task"
    assert finding.message == "run_async_task: hung: task 1"
    assert "--debug" in finding.fix
    assert codes(findings) == ["PD205"]


@pytest.mark.parametrize("verdict", [Verdict.CLEAN, Verdict.SKIPPED])
def test_nothing_for_a_clean_or_skipped_wrapper(verdict: Verdict) -> None:
    assert measured([result("run_async_task", verdict)], FIX_SUBJECT) == []


@pytest.mark.parametrize(
    ("kind", "severity"), [("wrapper", Severity.ERROR), ("mode", Severity.WARNING)]
)
def test_pd203_for_a_poisoned_subject(kind: str, severity: Severity) -> None:
    # GIVEN a subject whose held connection stayed in a transaction from task index 1 to the end
    poisoned = result(
        "run_async_task",
        Verdict.PINNED,
        kind=kind,
        census=(census(0), census(1, "intrans"), census(2, "intrans")),
    )

    # WHEN the measured findings are drawn
    findings = measured([poisoned], FIX_SUBJECT)

    # THEN PD203 names the subject and the human task number; an error for a wrapper
    finding = only(findings, "PD203")
    assert finding.severity is severity
    assert finding.subject == "run_async_task"
    assert "(task 2)" in finding.message
    assert "close_old_connections()" in finding.fix


def test_no_pd203_once_the_transaction_was_closed() -> None:
    # GIVEN the connection left a transaction open after task 1 but not after the last task
    recovered = result(
        "run_async_task",
        Verdict.PINNED,
        census=(census(0), census(1, "intrans"), census(2, "idle")),
    )

    # WHEN the measured findings are drawn
    # THEN there is no PD203
    assert "PD203" not in codes(measured([recovered], FIX_SUBJECT))


def test_no_pd203_for_the_transaction_of_the_task_still_in_progress() -> None:
    # GIVEN a wrapper that hung inside an atomic block: only the census of the task in progress
    # shows its connection in a transaction, the censuses between tasks do not
    hung = result(
        "run_async_task",
        Verdict.ERROR,
        stop=StopReason.HUNG,
        census=(census(0), census(1), census(2, "intrans")),
    )

    # WHEN the measured findings are drawn
    findings = measured([hung], FIX_SUBJECT)

    # THEN no task died mid-transaction: PD205 for the hang, and no PD203, as the symptoms of
    # the same run (drawn from the completed tasks) already say
    assert not any("poisoned" in s for s in symptoms_of(hung))
    assert codes(findings) == ["PD205"]


def test_pd204_when_no_wrapper_was_measured() -> None:
    # GIVEN only built-in modes were run
    modes = [result("async_to_sync", Verdict.CLEAN, kind="mode")]

    # WHEN the measured findings are drawn
    findings = measured(modes, "async_to_sync")

    # THEN PD204 tells the user to name a wrapper
    finding = only(findings, "PD204")
    assert finding.severity is Severity.INFO
    assert "--wrapper" in finding.fix
    assert finding.subject is None


def test_pd204_when_there_are_no_results_at_all() -> None:
    assert codes(measured([], None)) == ["PD204"]


def test_no_pd204_when_a_wrapper_was_measured() -> None:
    # GIVEN a clean wrapper among modes
    results = [
        result("async_to_sync", Verdict.CLEAN, kind="mode"),
        result("run_async_task", Verdict.CLEAN),
    ]

    # WHEN the measured findings are drawn
    # THEN nothing is reported
    assert measured(results, "async_to_sync") == []


def test_modes_never_produce_wrapper_findings() -> None:
    # GIVEN built-in modes that leak, pin and hang, and no wrapper
    modes = [
        result("asyncio_run", Verdict.LEAK, kind="mode"),
        result("sync_to_async", Verdict.PINNED, kind="mode"),
        result("thread_per_task", Verdict.ERROR, kind="mode"),
    ]

    # WHEN the measured findings are drawn
    findings = measured(modes, None)

    # THEN the modes' verdicts are no finding of the project's: only PD204
    assert codes(findings) == ["PD204"]


def test_findings_for_several_wrappers_keep_their_order_and_subjects() -> None:
    # GIVEN a leaking and a pinned wrapper next to a leaking mode
    results = [
        result("leaky", Verdict.LEAK),
        result("asyncio_run", Verdict.LEAK, kind="mode"),
        result("pinned", Verdict.PINNED),
    ]

    # WHEN the measured findings are drawn
    findings = measured(results, FIX_SUBJECT)

    # THEN one finding per wrapper, in the wrappers' order, and nothing for the mode
    assert [(f.code, f.subject) for f in findings] == [("PD201", "leaky"), ("PD202", "pinned")]


def test_a_refused_write_is_known_by_its_sqlstate_in_any_language() -> None:
    # GIVEN a task that failed on the read-only session of a server speaking German
    refused = dataclasses.replace(
        census(0),
        ok=False,
        error="InternalError: FEHLER:  kann UPDATE in einer Read-only-Transaktion nicht ausführen",
        sqlstate="25006",
    )
    other = dataclasses.replace(census(1), ok=False, error="ValueError: no", sqlstate=None)
    run = result("w", Verdict.ERROR, census=(refused, other))
    # THEN it counts as a refused write, and the other failure does not
    assert findings.refused_writes(run) == 1
