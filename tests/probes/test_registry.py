"""The mode registry: every module in pooldoctor/probes registers one documented mode."""

from __future__ import annotations

import pkgutil

import pytest

import pooldoctor.core.probes as probes
from pooldoctor.core.probes import all_modes, get_mode
from pooldoctor.core.probes.task import (
    OK,
    OPEN_TRANSACTION,
    RAISE_AFTER_QUERY,
    RAISE_IN_ATOMIC,
    schedule,
)


def test_every_module_registers_exactly_one_mode() -> None:
    modules = {m.name.replace("_", "-") for m in pkgutil.iter_modules(probes.__path__)}
    assert modules - {"task", "views"} == {m.name for m in all_modes()}


@pytest.mark.parametrize("mode", all_modes(), ids=lambda m: m.name)
def test_each_mode_says_what_real_code_it_reproduces(mode: probes.Mode) -> None:
    assert mode.summary and not mode.summary.endswith(".")
    assert len(mode.doc.split()) > 20, "the docstring explains the mechanism and cites the code"


def test_modes_are_listed_in_a_stable_order() -> None:
    orders = [m.order for m in all_modes()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


def test_only_modes_that_can_measure_clean_carry_a_fix() -> None:
    with_fix = {m.name for m in all_modes() if m.fix}
    assert with_fix == {"thread-sensitive-context-closed", "async-to-sync", "owned-executor"}
    for name in with_fix:
        compile(get_mode(name).fix or "", name, "exec")  # the printed fix is valid Python


def test_owned_executor_is_skipped_with_a_reason_where_asgiref_lacks_the_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asgiref.sync

    class NewThreadSensitiveContext:  # asgiref 3.9+ (CI's lowest env has 3.8)
        def __init__(self, executor: object = None) -> None:
            pass

    class OldThreadSensitiveContext:  # asgiref before ThreadSensitiveContext(executor=...)
        def __init__(self) -> None:
            pass

    mode = get_mode("owned-executor")
    monkeypatch.setattr(asgiref.sync, "ThreadSensitiveContext", NewThreadSensitiveContext)
    assert mode.unavailable() is None
    monkeypatch.setattr(asgiref.sync, "ThreadSensitiveContext", OldThreadSensitiveContext)
    reason = mode.unavailable()
    assert reason is not None and "ThreadSensitiveContext(executor=...)" in reason


def test_schedule_fails_each_way_once_in_a_default_run() -> None:
    kinds = schedule(12)
    assert kinds.count(RAISE_AFTER_QUERY) == kinds.count(RAISE_IN_ATOMIC) == 1
    assert kinds.count(OPEN_TRANSACTION) == 1
    assert kinds[:3] == [OK, OK, OK]  # clean tasks are measured before the first failure


def test_longer_runs_repeat_the_failures() -> None:
    kinds = schedule(24)
    assert kinds[12:] == kinds[:12]


def test_short_runs_still_fail_once() -> None:
    assert schedule(2) == [OK, RAISE_AFTER_QUERY]
