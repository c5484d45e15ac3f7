"""Grouping lost and pinned checkouts into leak sites: pure, hand-built values."""

from __future__ import annotations

from pooldoctor.core.forensics.sites import Cause, Checkout, Loss, leak_sites
from pooldoctor.core.forensics.stacks import RawFrame
from pooldoctor.core.forensics.threads import ThreadLife
from pooldoctor.core.model import LeakKind

PROJECT = "/srv/app"
DJANGO = RawFrame("/v/site-packages/django/db/backends/base/base.py", 270, "connect", "django.db")
TASK_42 = RawFrame("/srv/app/shop/tasks.py", 42, "refresh_prices", "shop.tasks")
TASK_57 = RawFrame("/srv/app/shop/tasks.py", 57, "sync_stock", "shop.tasks")
CONTEXT = "ThreadSensitiveContext executor"


def lost(task: str, at: float, ended: float | None, frame: RawFrame = TASK_42) -> Loss:
    thread = ThreadLife(name=f"ThreadPoolExecutor-{at}", role=CONTEXT, ended=ended)
    return Loss(Checkout(stack=(frame, DJANGO), thread=thread, task=task, at=at), Cause.COLLECTED)


def test_losses_at_one_line_on_one_kind_of_thread_are_one_counted_site() -> None:
    # GIVEN three tasks that lost their connection at the same line, threads ending 3-5 ms
    # after each task returned, and one loss elsewhere
    losses = [
        lost("task 2", at=2.0, ended=2.505),
        lost("task 1", at=1.0, ended=1.503),
        lost("task 3", at=3.0, ended=3.504),
        lost("task 4", at=4.0, ended=4.5, frame=TASK_57),
    ]
    ends = {"task 1": 1.5, "task 2": 2.5, "task 3": 3.5, "task 4": 4.5}
    # WHEN they are grouped
    first, second = leak_sites(losses, ends, PROJECT)
    # THEN the bigger site comes first, located at the project's frame, with the median delay
    assert (first.kind, first.file, first.line, first.function) == (
        LeakKind.LOST,
        "shop/tasks.py",
        42,
        "refresh_prices",
    )
    assert first.count == 3
    assert first.thread == CONTEXT
    assert first.tasks == ("task 1", "task 2", "task 3")
    assert first.reason == (
        "thread ended 4 ms after its task returned; connection garbage-collected while checked out"
    )
    assert first.stack[0].folded == ("django",)
    assert (second.line, second.count) == (57, 1)
    assert second.reason.startswith("thread ended 0 ms after the task returned")


def test_a_thread_that_ended_before_its_task_returned_says_so() -> None:
    [site] = leak_sites([lost("t", at=1.0, ended=1.49)], {"t": 1.5}, PROJECT)
    assert site.reason.startswith("thread ended 10 ms before the task returned")


def test_a_pinned_connection_is_its_own_kind_with_its_evidence() -> None:
    thread = ThreadLife(name="ThreadPoolExecutor-0_0", role="process-wide sync_to_async executor")
    held = Loss(
        Checkout(stack=(TASK_42, DJANGO), thread=thread, task="task 1", at=1.0),
        Cause.HELD,
        "checked out 0.4 s ago, transaction intrans",
    )
    [site] = leak_sites([held, lost("task 2", 2.0, 2.6)], {"task 2": 2.5}, PROJECT)[1:]
    assert site.kind is LeakKind.PINNED
    assert site.reason == (
        "held between tasks by a live thread, never returned; "
        "checked out 0.4 s ago, transaction intrans"
    )


def test_without_a_project_frame_the_site_has_no_location() -> None:
    thread = ThreadLife(name="t", role="thread")
    loss = Loss(Checkout(stack=(DJANGO,), thread=thread, task=None, at=0.0), Cause.DROPPED)
    [site] = leak_sites([loss], {}, PROJECT)
    assert (site.file, site.line, site.function) == (None, None, None)
    assert site.tasks == ()
    assert site.reason == (
        "Django let go of the connection object without returning it to the pool"
    )


def test_no_losses_no_sites() -> None:
    assert leak_sites([], {}, PROJECT) == ()


PROBE = RawFrame("/v/site-packages/pooldoctor/core/probes/task.py", 108, "probe_task",
                 "pooldoctor.core.probes.task")  # fmt: skip
WRAPPER = RawFrame("/srv/app/shop/celery.py", 9, "run", "shop.celery")


def test_a_wrapper_s_site_is_its_own_line_and_a_mode_s_the_probe_s() -> None:
    # GIVEN a checkout by the probe task, run through the project's wrapper
    thread = ThreadLife(name="t", role=CONTEXT, ended=1.6)
    stack = (WRAPPER, PROBE, DJANGO)
    loss = Loss(Checkout(stack=stack, thread=thread, task="task 1", at=1.0), Cause.COLLECTED)
    # WHEN the project's wrapper ran it, the site is the wrapper's line
    [site] = leak_sites([loss], {"task 1": 1.5}, PROJECT)
    assert (site.file, site.line, site.function) == ("shop/celery.py", 9, "run")
    # AND the probe is still on the stack, folded as pooldoctor's
    assert [(e.file, e.folded) for e in site.stack] == [
        (None, ("django", "pooldoctor")),
        ("shop/celery.py", ()),
    ]
    # WHEN a built-in mode ran it, the probe's line stands in for the project's
    [mode] = leak_sites([loss], {"task 1": 1.5}, PROJECT, stand_ins=True)
    assert (mode.file, mode.line, mode.function) == (
        "pooldoctor/core/probes/task.py", 108, "probe_task")  # fmt: skip
