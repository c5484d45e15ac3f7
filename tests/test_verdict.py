"""The pure verdict rules, fed hand-built censuses: no Django, no database.

Each census is what a subject reports after one task (``index`` counts from 0, as the runner's
``enumerate`` does); a run stopped mid-task (exhausted, hung) ends with a census of the task in
progress.
"""

from __future__ import annotations

import itertools

import pytest

from pooldoctor.core.model import (
    PoolStats,
    StopReason,
    SubjectRun,
    TaskCensus,
    ThreadConnection,
    Verdict,
)
from pooldoctor.core.verdict import (
    completed,
    fails,
    judge,
    poisoned_since,
    symptoms_of,
    tasks_until_exhaustion,
    worst,
)

EXECUTOR = "ThreadPoolExecutor-0_0"
EXECUTOR_ROLE = "process-wide sync_to_async executor"
POOL_TIMEOUT = "PoolTimeout: couldn't get a connection after 5.00 sec"
ON_PURPOSE = "ProbeFailure: raised on purpose"


def pool(max_size: int = 10, checked_out: int = 0) -> PoolStats:
    return PoolStats(
        min_size=0,
        max_size=max_size,
        size=checked_out,
        available=0,
        waiting=0,
        connections_opened=checked_out,
        timeout=5.0,
    )


def connection(
    thread: str = EXECUTOR,
    role: str = EXECUTOR_ROLE,
    *,
    held: bool = True,
    transaction: str = "idle",
) -> ThreadConnection:
    return ThreadConnection(
        thread=thread,
        thread_role=role,
        thread_alive=held,
        open=True,
        checked_out=held,
        held=held,
        transaction=transaction,
        autocommit=transaction == "idle",
        held_seconds=0.5,
        backend_pid=4242,
    )


_DEFAULT_POOL = pool()


def census(
    index: int,
    lost: int = 0,
    held: int = 0,
    pool: PoolStats | None = _DEFAULT_POOL,
    connections: tuple[ThreadConnection, ...] = (),
    error: str | None = None,
    expected: bool = False,
) -> TaskCensus:
    return TaskCensus(
        index=index,
        kind="ok" if error is None else "raise-after-query",
        ok=error is None,
        error=error,
        expected_error=expected,
        seconds=0.01,
        pool=pool,
        lost=lost,
        held=held,
        connections=connections,
        server=None,
    )


def run(
    *censuses: TaskCensus,
    stop: StopReason = StopReason.DONE,
    pooled: bool = True,
    detail: str | None = None,
    checkouts: int = 1,
) -> SubjectRun:
    return SubjectRun(
        subject="run_async_task",
        kind="wrapper",
        description="project wrapper",
        stop=stop,
        stop_detail=detail,
        tasks_planned=len(censuses),
        census=tuple(censuses),
        pooled=pooled,
        checkouts=checkouts,
    )


def in_transaction(index: int, transaction: str = "intrans") -> TaskCensus:
    """A census after which the executor thread holds a connection inside a transaction."""
    return census(
        index,
        held=1,
        connections=(connection(transaction=transaction),),
        error=ON_PURPOSE,
        expected=True,
    )


# --- clean -------------------------------------------------------------------------------------


def test_clean_run_holds_and_loses_nothing() -> None:
    # GIVEN three tasks after which nothing is held or lost
    subject = run(census(0), census(1), census(2))

    # WHEN it is judged
    result = judge(subject)

    # THEN it is clean, with zeros everywhere and no extrapolated exhaustion
    assert result.verdict is Verdict.CLEAN
    assert result.summary == "nothing held between tasks, nothing lost"
    assert result.lost_slots == 0
    assert result.lost_per_task == 0.0
    assert result.held_connections == 0
    assert result.tasks_until_exhaustion is None
    assert result.symptoms == ()
    assert result.tasks == 3


def test_clean_run_with_expected_failures_has_no_symptoms() -> None:
    # GIVEN a clean run whose second task failed on purpose
    subject = run(census(0), census(1, error=ON_PURPOSE, expected=True), census(2))

    # WHEN it is judged
    result = judge(subject)

    # THEN the failure is counted but is not a symptom
    assert result.verdict is Verdict.CLEAN
    assert result.failed_tasks == 1
    assert result.symptoms == ()


# --- pinned ------------------------------------------------------------------------------------


def test_pinned_when_one_connection_stays_held_by_a_thread() -> None:
    # GIVEN the executor thread holds one connection after every task, never more
    held = (connection(), connection("MainThread", "main thread", held=False))
    subject = run(*(census(i, held=1, connections=held) for i in range(3)))

    # WHEN it is judged
    result = judge(subject)

    # THEN it is pinned, and the summary names the holder (not the thread that holds nothing)
    assert result.verdict is Verdict.PINNED
    assert result.summary == (
        f"1 connection stays checked out between tasks, held by {EXECUTOR} ({EXECUTOR_ROLE})"
    )
    assert "MainThread" not in result.summary
    assert result.held_connections == 1
    assert result.lost_slots == 0
    # no growth and no loss: the pool is not drained, however long the process runs
    assert result.tasks_until_exhaustion is None


def test_pinned_with_two_connections_says_stay_and_names_both_holders_sorted() -> None:
    # GIVEN two threads each hold a connection after every task
    held = (connection("Worker-2", "owned executor"), connection())
    subject = run(census(0, held=2, connections=held), census(1, held=2, connections=held))

    # WHEN it is judged
    result = judge(subject)

    # THEN the summary uses the plural and lists the holders in a stable order
    assert result.verdict is Verdict.PINNED
    assert result.summary == (
        "2 connections stay checked out between tasks, held by "
        f"{EXECUTOR} ({EXECUTOR_ROLE}), Worker-2 (owned executor)"
    )
    assert result.held_connections == 2


# --- leak by lost slots ------------------------------------------------------------------------


def test_leak_by_lost_slots_extrapolates_exhaustion_from_max_size() -> None:
    # GIVEN every task loses one pool slot, in a pool of 10
    subject = run(census(0, lost=1), census(1, lost=2), census(2, lost=3))

    # WHEN it is judged
    result = judge(subject)

    # THEN it leaks one slot per task, and the 7 free slots last 7 more tasks: 3 + 7
    assert result.verdict is Verdict.LEAK
    assert result.lost_slots == 3
    assert result.lost_per_task == 1.0
    assert result.tasks_until_exhaustion == 10
    assert tasks_until_exhaustion(subject) == 10
    assert result.summary == "lost 3 pool slots in 3 tasks; the pool is exhausted after 10 tasks"


def test_leak_extrapolation_counts_held_connections_as_taken() -> None:
    # GIVEN one slot lost per task while the executor pins one more, in a pool of 10
    held = (connection(),)
    subject = run(
        census(0, lost=1, held=1, connections=held),
        census(1, lost=2, held=1, connections=held),
    )

    # WHEN the exhaustion is extrapolated
    # THEN only 10 - 2 lost - 1 held = 7 slots remain for 7 more tasks
    assert tasks_until_exhaustion(subject) == 2 + 7


def test_leak_extrapolation_rounds_down_partial_tasks() -> None:
    # GIVEN half a slot lost per task in a pool of 4: 1 lost after 2 tasks, 3 free
    subject = run(census(0, pool=pool(4)), census(1, lost=1, pool=pool(4)))

    # WHEN judged
    result = judge(subject)

    # THEN 3 free slots at 0.5 per task last 6 more tasks
    assert result.lost_per_task == 0.5
    assert result.tasks_until_exhaustion == 2 + 6
    assert result.summary.startswith("lost 1 pool slot in 2 tasks")


# --- leak by held growth -----------------------------------------------------------------------


def test_leak_by_growth_of_held_connections() -> None:
    # GIVEN each task leaves one more connection held by a live thread, nothing lost
    subject = run(
        census(0, held=1, connections=(connection("T-0"),)),
        census(1, held=2, connections=(connection("T-0"), connection("T-1"))),
        census(2, held=3, connections=(connection("T-0"), connection("T-1"), connection("T-2"))),
    )

    # WHEN it is judged
    result = judge(subject)

    # THEN it leaks: held connections grow, though no slot was lost
    assert result.verdict is Verdict.LEAK
    assert result.lost_slots == 0
    assert result.held_connections == 3
    assert "held connections grew from 1 to 3" in result.summary
    assert "lost" not in result.summary
    assert result.tasks_until_exhaustion is not None


def test_held_growth_of_one_per_task_exhausts_a_pool_of_ten_after_ten_tasks() -> None:
    # GIVEN held connections grow 1, 2, 3: one more per task, in a pool of 10
    subject = run(census(0, held=1), census(1, held=2), census(2, held=3))

    # WHEN the exhaustion is extrapolated
    # THEN after task n, n connections are held: the 10th task takes the last slot. The rate is
    # (3 - 1) held over the 2 intervals between the 3 censuses, i.e. 1 per task, so the 7 free
    # slots last 7 more tasks.
    assert tasks_until_exhaustion(subject) == 3 + 7


def test_held_shrinking_is_not_a_leak() -> None:
    # GIVEN held connections go down over the run (threads finished and gave them back)
    subject = run(census(0, held=2, connections=(connection(), connection("T-1"))), census(1))

    # WHEN judged
    result = judge(subject)

    # THEN nothing is held at the end and nothing was lost: clean
    assert result.verdict is Verdict.CLEAN
    assert result.tasks_until_exhaustion is None


# --- exhausted ---------------------------------------------------------------------------------

EXHAUSTED_DETAIL = "task 4 waited for a connection with 0 of 4 pool slots free"


def exhausted_run() -> SubjectRun:
    """Three tasks lose a slot each of a pool of 4, the fourth waits for one: the runner sends a
    final census of that task in progress, its error the watchdog's TimeoutError."""
    pinned = (connection(),)
    return run(
        census(0, lost=1, held=1, pool=pool(4), connections=pinned),
        census(1, lost=2, held=1, pool=pool(4), connections=pinned),
        census(2, lost=3, held=1, pool=pool(4), connections=pinned),
        census(
            3,
            lost=3,
            held=2,
            pool=pool(4, checked_out=4),
            connections=(*pinned, connection("Waiter")),
            error=f"TimeoutError: {EXHAUSTED_DETAIL}",
        ),
        stop=StopReason.EXHAUSTED,
        detail=EXHAUSTED_DETAIL,
    )


def test_exhausted_run_measures_exhaustion_at_the_task_in_progress() -> None:
    # GIVEN a run stopped because the 4th task (index 3) found no free pool slot
    subject = exhausted_run()

    # WHEN it is judged
    result = judge(subject)

    # THEN it leaks, and the exhaustion is measured, not extrapolated: 3 tasks ran before it
    assert result.verdict is Verdict.LEAK
    assert result.tasks_until_exhaustion == subject.census[-1].index == 3
    assert "the pool was exhausted at task 4" in result.summary
    assert "is exhausted after" not in result.summary
    assert result.lost_slots == 3
    assert result.lost_per_task == 1.0


def test_exhausted_run_does_not_list_the_in_progress_error_as_a_symptom() -> None:
    # GIVEN an exhausted run whose final census carries the watchdog's TimeoutError
    subject = exhausted_run()

    # WHEN it is judged
    result = judge(subject)

    # THEN the stop detail tells that story; the symptoms do not repeat it
    assert result.symptoms == ()
    assert symptoms_of(subject) == []


def test_exhausted_run_ignores_the_in_progress_census_for_held_growth() -> None:
    # GIVEN held stays at 1 between tasks and is 2 only in the census of the waiting task
    subject = exhausted_run()

    # WHEN it is judged
    result = judge(subject)

    # THEN held connections did not grow: the leak is the lost slots alone
    assert "grew" not in result.summary
    assert result.summary.startswith("lost 3 pool slots in 3 tasks")
    assert completed(subject) == subject.census[:-1]


def test_exhausted_run_without_loss_or_growth_is_never_clean() -> None:
    # GIVEN two clean tasks, then a third that found no free slot in a pool of 2 (it needs more
    # connections than max_size): nothing was lost or held between tasks before the stop
    detail = "task 3 waited for a connection with 0 of 2 pool slots free"
    subject = run(
        census(0, pool=pool(2)),
        census(1, pool=pool(2)),
        census(2, pool=pool(2, checked_out=2), error=f"TimeoutError: {detail}"),
        stop=StopReason.EXHAUSTED,
        detail=detail,
    )

    # WHEN it is judged
    result = judge(subject)

    # THEN the run could not be measured to the end: an error, as for a hung run, not "clean"
    # (a clean verdict next to tasks_until_exhaustion == 2 would contradict itself)
    assert result.tasks_until_exhaustion == 2
    assert result.verdict is Verdict.ERROR
    assert fails(result.verdict, "leak")


def test_exhausted_at_the_first_task_is_an_error() -> None:
    # GIVEN the very first task found no free slot, so no task completed
    subject = run(
        census(0, pool=pool(1, checked_out=1), error="TimeoutError: task 1 waited"),
        stop=StopReason.EXHAUSTED,
        detail="task 1 waited for a connection with 0 of 1 pool slots free",
    )

    # WHEN it is judged
    result = judge(subject)

    # THEN nothing was measured: an error, and the pool ran out before any task completed
    assert result.verdict is Verdict.ERROR
    assert result.tasks_until_exhaustion == 0


def test_every_task_failing_unexpectedly_is_an_error_not_clean() -> None:
    # GIVEN every task failed before the probe's own code ran, nothing held or lost
    subject = run(*(census(i, error=POOL_TIMEOUT) for i in range(3)))

    # WHEN it is judged
    result = judge(subject)

    # THEN nothing about the ORM was measured: an error that names what the tasks met
    assert result.verdict is Verdict.ERROR
    assert POOL_TIMEOUT in result.summary
    assert result.symptoms == (f"3 tasks failed with {POOL_TIMEOUT}",)


def test_one_task_reaching_the_probe_is_enough_to_judge() -> None:
    # GIVEN one task failed unexpectedly and another failed the way the probe meant
    subject = run(census(0, error=POOL_TIMEOUT), census(1, error=ON_PURPOSE, expected=True))

    # WHEN it is judged
    # THEN the run is judged on what was held and lost: clean, with the timeout as a symptom
    result = judge(subject)
    assert result.verdict is Verdict.CLEAN
    assert result.symptoms == (f"1 task failed with {POOL_TIMEOUT}",)


# --- hung and crashed --------------------------------------------------------------------------


def test_hung_run_without_loss_is_an_error() -> None:
    # GIVEN the third task never finished, nothing was lost
    detail = "task 3 (ok) did not finish within 30 s"
    subject = run(
        census(0),
        census(1),
        census(2, held=1, connections=(connection(),), error=f"TimeoutError: {detail}"),
        stop=StopReason.HUNG,
        detail=detail,
    )

    # WHEN it is judged
    result = judge(subject)

    # THEN it is an error naming the stop, not pinned by the hung task's own connection
    assert result.verdict is Verdict.ERROR
    assert result.summary == f"hung: {detail}"
    assert result.symptoms == ()
    assert result.tasks_until_exhaustion is None


def test_hung_run_with_loss_is_a_leak_extrapolated_from_completed_tasks() -> None:
    # GIVEN two tasks lost a slot each of 10, then the third hung holding its own connection
    detail = "task 3 (ok) did not finish within 30 s"
    subject = run(
        census(0, lost=1),
        census(1, lost=2),
        census(2, lost=2, held=1, connections=(connection(),), error=f"TimeoutError: {detail}"),
        stop=StopReason.HUNG,
        detail=detail,
    )

    # WHEN it is judged
    result = judge(subject)

    # THEN the loss wins over the hang, and the extrapolation uses the censuses between tasks:
    # 1 slot per task, 10 - 2 lost = 8 free after 2 tasks (the hung task's own connection is
    # not a connection held between tasks)
    assert result.verdict is Verdict.LEAK
    assert result.lost_per_task == 1.0
    assert result.summary.startswith("lost 2 pool slots in 2 tasks")
    assert result.tasks_until_exhaustion == 2 + 8


def test_crashed_before_any_task_could_not_run() -> None:
    # GIVEN the subject process crashed while setting up
    subject = run(stop=StopReason.CRASHED, detail="setting the subject up raised ImportError: x")

    # WHEN it is judged
    result = judge(subject)

    # THEN it is an error that says it could not run, with the detail
    assert result.verdict is Verdict.ERROR
    assert result.summary == "could not run: setting the subject up raised ImportError: x"
    assert result.tasks == 0
    assert result.tasks_until_exhaustion is None
    assert tasks_until_exhaustion(subject) is None


def test_crashed_mid_run_without_loss_is_an_error() -> None:
    # GIVEN the process died after two clean tasks
    subject = run(census(0), census(1), stop=StopReason.CRASHED, detail="exit code -9")

    # WHEN it is judged
    result = judge(subject)

    # THEN it is an error naming the crash
    assert result.verdict is Verdict.ERROR
    assert result.summary == "crashed: exit code -9"


def test_skipped_run_is_skipped_whatever_its_census() -> None:
    # GIVEN the subject cannot run here
    subject = run(stop=StopReason.SKIPPED, detail="asgiref 3.7 has no ThreadSensitiveContext")

    # WHEN it is judged
    result = judge(subject)

    # THEN it is skipped with the reason and no numbers
    assert result.verdict is Verdict.SKIPPED
    assert result.summary == "skipped: asgiref 3.7 has no ThreadSensitiveContext"
    assert result.symptoms == ()
    assert result.tasks_until_exhaustion is None


# --- without a pool ----------------------------------------------------------------------------


def test_run_without_pool_counts_server_connections_and_never_exhausts() -> None:
    # GIVEN no pool: every task leaves one more server connection open
    subject = run(census(0, lost=1, pool=None), census(1, lost=2, pool=None), pooled=False)

    # WHEN it is judged
    result = judge(subject)

    # THEN it leaks server connections, and there is no pool to exhaust
    assert result.verdict is Verdict.LEAK
    assert result.summary == "lost 2 server connections in 2 tasks"
    assert "pool" not in result.summary
    assert result.tasks_until_exhaustion is None
    assert tasks_until_exhaustion(subject) is None
    assert result.lost_per_task == 1.0


def test_run_without_pool_uses_the_singular_for_one_connection() -> None:
    # GIVEN no pool and one lost connection in one task
    subject = run(census(0, lost=1, pool=None), pooled=False)

    # WHEN judged
    # THEN the summary reads naturally
    assert judge(subject).summary == "lost 1 server connection in 1 task"


# --- symptoms ----------------------------------------------------------------------------------


def test_symptoms_group_unexpected_errors_by_message_most_frequent_first() -> None:
    # GIVEN two tasks met a pool timeout, one a closed connection, one failed on purpose
    closed = "InterfaceError: connection already closed"
    subject = run(
        census(0, error=closed),
        census(1, error=POOL_TIMEOUT),
        census(2, error=ON_PURPOSE, expected=True),
        census(3, error=POOL_TIMEOUT),
        census(4),
    )

    # WHEN its symptoms are listed
    symptoms = symptoms_of(subject)

    # THEN each unexpected error appears once with its count, the commonest first
    assert symptoms == [
        f"2 tasks failed with {POOL_TIMEOUT}",
        f"1 task failed with {closed}",
    ]
    assert judge(subject).symptoms == tuple(symptoms)


def test_symptoms_ignore_expected_errors_even_when_repeated() -> None:
    # GIVEN every task failed on purpose
    subject = run(*(census(i, error=ON_PURPOSE, expected=True) for i in range(3)))

    # WHEN its symptoms are listed
    # THEN there are none
    assert symptoms_of(subject) == []


def test_symptoms_end_with_the_poisoned_connection_numbered_from_one() -> None:
    # GIVEN a task (index 1) died mid-transaction and its connection stayed in it to the end
    subject = run(census(0), in_transaction(1), in_transaction(2))

    # WHEN its symptoms are listed
    symptoms = symptoms_of(subject)

    # THEN the poisoned connection is named with the human task number
    assert symptoms == [
        "a held connection stayed idle in transaction from task 2 on: later tasks ran inside "
        "a stale transaction (poisoned connection)"
    ]


# --- poisoned_since ----------------------------------------------------------------------------


def test_poisoned_since_the_first_task_of_the_final_streak() -> None:
    # GIVEN a held connection sat in a transaction after tasks 2, 3 and 4 (indexes)
    censuses = (census(0), census(1), in_transaction(2), in_transaction(3), in_transaction(4))

    # WHEN asked since when it is poisoned
    # THEN it is index 2
    assert poisoned_since(censuses) == 2


def test_poisoned_since_counts_inerror_like_intrans() -> None:
    # GIVEN the connection sat in a failed transaction after the last two tasks
    censuses = (census(0), in_transaction(1, "inerror"), in_transaction(2, "inerror"))

    # WHEN asked
    # THEN it is poisoned since index 1
    assert poisoned_since(censuses) == 1


def test_poisoned_since_the_first_task_when_poisoned_throughout() -> None:
    # GIVEN every census shows the poisoned connection
    censuses = (in_transaction(0), in_transaction(1))

    # WHEN asked
    # THEN it is since index 0
    assert poisoned_since(censuses) == 0


def test_poisoned_since_starts_after_a_recovery() -> None:
    # GIVEN the transaction was closed after task 1, then another task left one open
    censuses = (in_transaction(0), census(1), in_transaction(2), in_transaction(3))

    # WHEN asked
    # THEN only the final streak counts
    assert poisoned_since(censuses) == 2


def test_not_poisoned_when_the_last_census_has_no_open_transaction() -> None:
    # GIVEN the connection sat in a transaction after some tasks, but not after the last one
    censuses = (census(0), in_transaction(1), in_transaction(2), census(3))

    # WHEN asked
    # THEN it is not poisoned
    assert poisoned_since(censuses) is None


def test_not_poisoned_when_the_connection_in_transaction_is_not_held() -> None:
    # GIVEN a connection in a transaction that no live thread holds
    loose = (connection(held=False, transaction="intrans"),)
    censuses = (census(0, connections=loose), census(1, connections=loose))

    # WHEN asked
    # THEN it is not poisoned (no later task runs on it)
    assert poisoned_since(censuses) is None


def test_not_poisoned_for_an_empty_census_or_idle_connections() -> None:
    held_idle = (connection(transaction="idle"),)
    assert poisoned_since(()) is None
    assert poisoned_since((census(0, held=1, connections=held_idle),)) is None


# --- worst -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], Verdict.CLEAN),
        ([Verdict.CLEAN], Verdict.CLEAN),
        ([Verdict.SKIPPED], Verdict.SKIPPED),
        ([Verdict.CLEAN, Verdict.PINNED], Verdict.PINNED),
        ([Verdict.PINNED, Verdict.ERROR, Verdict.CLEAN], Verdict.ERROR),
        ([Verdict.LEAK, Verdict.ERROR, Verdict.PINNED], Verdict.LEAK),
        ([Verdict.ERROR, Verdict.LEAK], Verdict.LEAK),
        ([Verdict.SKIPPED, Verdict.PINNED], Verdict.PINNED),
    ],
)
def test_worst_picks_the_highest_rank(verdicts: list[Verdict], expected: Verdict) -> None:
    assert worst(verdicts) is expected


def test_worst_ranks_leak_over_error_over_pinned_over_clean() -> None:
    ranked = [Verdict.CLEAN, Verdict.PINNED, Verdict.ERROR, Verdict.LEAK]
    for lower, higher in itertools.pairwise(ranked):
        assert worst([higher, lower]) is higher
        assert worst([lower, higher]) is higher


def test_worst_does_not_depend_on_the_order_of_the_verdicts() -> None:
    # GIVEN one wrapper was skipped and another measured clean
    # WHEN the project's verdict is taken in either order
    # THEN it is the same verdict (the order of --wrapper options must not change it)
    assert worst([Verdict.SKIPPED, Verdict.CLEAN]) is worst([Verdict.CLEAN, Verdict.SKIPPED])


# --- fails -------------------------------------------------------------------------------------

FAILING = {
    (Verdict.LEAK, "leak"),
    (Verdict.LEAK, "pinned"),
    (Verdict.PINNED, "pinned"),
    (Verdict.ERROR, "leak"),
    (Verdict.ERROR, "pinned"),
    (Verdict.UNSAFE, "leak"),
    (Verdict.UNSAFE, "pinned"),
}


@pytest.mark.parametrize("fail_on", ["leak", "pinned", "never"])
@pytest.mark.parametrize("verdict", list(Verdict))
def test_fails_for_every_verdict_and_threshold(verdict: Verdict, fail_on: str) -> None:
    # GIVEN a wrapper's verdict and the --fail-on threshold
    # WHEN asked whether the check fails
    # THEN leak fails on leak and pinned, pinned only on pinned, an error on both, nothing on
    # never, and clean or skipped never
    assert fails(verdict, fail_on) is ((verdict, fail_on) in FAILING)


def test_a_wrapper_that_made_no_query_is_an_error_not_clean() -> None:
    # GIVEN a wrapper whose tasks all returned, without a single checkout or scheduled failure
    result = judge(run(census(0), census(1), census(2), checkouts=0))
    # THEN its code never ran: an error, with the reason
    assert result.verdict is Verdict.ERROR
    assert result.summary.startswith("the wrapper never ran the task: in 3 tasks it made no query")


def test_a_coroutine_nobody_awaited_is_named_as_the_reason() -> None:
    reason = "the wrapper returned a coroutine that was never awaited: its code never ran"
    tasks = [census(i, error=f"NeverAwaited: {reason}") for i in range(3)]
    result = judge(run(*tasks, checkouts=0))
    assert result.verdict is Verdict.ERROR
    assert result.summary == reason


def test_held_growing_to_one_per_task_thread_is_a_threads_pool_starting_not_a_leak() -> None:
    # GIVEN a threads pool of 2: its second thread starts late and keeps its connection too
    subject = run(
        census(0, held=1, connections=(connection("worker-1"),)),
        census(1, held=1, connections=(connection("worker-1"),)),
        census(2, held=2, connections=(connection("worker-1"), connection("worker-2"))),
    )

    # WHEN judged knowing 2 threads run tasks at once
    result = judge(subject, task_threads=2)

    # THEN one connection per thread stays checked out: pinned, with no exhaustion foretold
    assert result.verdict is Verdict.PINNED
    assert result.held_connections == 2
    assert "held by" in result.summary
    # and the same growth in a process with one task thread is still a leak
    assert judge(subject).verdict is Verdict.LEAK


def test_held_growing_past_the_task_threads_is_a_leak() -> None:
    # GIVEN 2 task threads but 3 held connections (a third thread that is not one of them)
    subject = run(
        census(0, held=1, connections=(connection("T-0"),)),
        census(1, held=3, connections=(connection("T-0"), connection("T-1"), connection("T-2"))),
    )
    assert judge(subject, task_threads=2).verdict is Verdict.LEAK


def test_one_thread_holding_two_is_a_leak_whatever_the_threads() -> None:
    subject = run(
        census(0, held=1, connections=(connection("T-0"),)),
        census(1, held=2, connections=(connection("T-0"), connection("T-0"))),
    )
    assert judge(subject, task_threads=4).verdict is Verdict.LEAK
