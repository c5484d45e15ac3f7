"""Stack capture across asgiref's hop, and how frames are told apart: no database needed.

Each test runs a sync function through ``sync_to_async`` the way the async ORM does and captures
the stack inside it, where a checkout would happen.
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
from collections.abc import AsyncIterator

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, async_to_sync, sync_to_async

import pooldoctor
from pooldoctor.core.forensics.stacks import (
    Captured,
    RawFrame,
    capture,
    display_path,
    fold,
    in_project_tree,
    is_library,
    project_frame,
)

HERE = "tests/forensics/test_stacks.py"


def checkout() -> Captured:
    """Stands in for Django's connect(), where the ledger captures."""
    return capture()


def functions(captured: Captured) -> list[str]:
    return [f.function for f in captured.stack if f.file == __file__]


async def task_body() -> Captured:
    return await sync_to_async(checkout)()


def test_a_thread_sensitive_context_call_is_traced_to_the_awaiting_coroutine() -> None:
    # GIVEN a coroutine that makes a thread-sensitive call inside a ThreadSensitiveContext
    async def in_context() -> Captured:
        async with ThreadSensitiveContext():
            return await task_body()

    # WHEN the call captures its stack on the context's executor thread
    captured = asyncio.run(in_context())
    # THEN the coroutine frames that awaited it are on the stack, outermost first
    assert functions(captured)[-4:] == [
        "test_a_thread_sensitive_context_call_is_traced_to_the_awaiting_coroutine",
        "in_context",
        "task_body",
        "checkout",
    ]
    assert captured.executor == "context"


def test_the_process_wide_executor_is_recognised() -> None:
    captured = asyncio.run(task_body())
    assert captured.executor == "process"
    assert functions(captured)[-2:] == ["task_body", "checkout"]


def test_a_thread_insensitive_call_runs_on_the_loop_default_executor() -> None:
    async def body() -> Captured:
        return await sync_to_async(checkout, thread_sensitive=False)()

    captured = asyncio.run(body())
    assert captured.executor == "loop"
    assert functions(captured)[-2:] == ["body", "checkout"]


def test_async_to_sync_sends_the_call_back_to_the_blocked_caller() -> None:
    # async_to_sync runs the loop on another thread and the thread-sensitive call here
    def caller() -> Captured:
        return async_to_sync(task_body)()

    captured = caller()
    assert captured.executor == "caller"
    names = functions(captured)
    assert names.index("caller") < names.index("task_body") < names.index("checkout")


def test_an_async_for_over_an_async_generator_is_followed() -> None:
    # ``async for`` awaits asend(), which hides the generator; QuerySet.__aiter__ is one
    async def rows() -> AsyncIterator[Captured]:
        yield await sync_to_async(checkout)()

    async def consume() -> list[Captured]:
        return [c async for c in rows()]

    [captured] = asyncio.run(consume())
    names = functions(captured)
    # (before Python 3.12 the comprehension is a frame of its own, between the two)
    assert names.index("consume") < names.index("rows") < names.index("checkout")
    assert names[-2:] == ["rows", "checkout"]


def test_plain_sync_code_is_its_own_stack() -> None:
    captured = checkout()
    assert captured.executor is None
    assert functions(captured)[-2:] == ["test_plain_sync_code_is_its_own_stack", "checkout"]


def frame(module: str, file: str, function: str = "f", line: int = 1) -> RawFrame:
    return RawFrame(file, line, function, module)


def test_library_frames_are_told_from_the_project() -> None:
    site = f"{sys.prefix}/lib/python3.12/site-packages"
    assert is_library(frame("django.db.models.query", f"{site}/django/db/models/query.py"))
    assert is_library(frame("asyncio.base_events", "/usr/lib/python3.12/asyncio/base_events.py"))
    assert is_library(frame("pooldoctor.hosts.inprocess.runner", "/src/pooldoctor/runner.py"))
    assert is_library(frame("importlib._bootstrap", "<frozen importlib._bootstrap>"))
    # the probe task is pooldoctor's code, unless it stands in for the project's (a built-in mode)
    probe = frame("pooldoctor.core.probes.task", "/src/pooldoctor/core/probes/task.py")
    assert is_library(probe)
    assert not is_library(probe, stand_ins=True)
    assert not is_library(frame("shop.tasks", "/srv/app/shop/tasks.py"))
    assert not is_library(frame("shop.tasks", "/srv/app/shop/tasks.py"), stand_ins=True)


def test_pooldoctor_run_as_a_script_is_pooldoctor() -> None:
    # the in-process runner runs as ``__main__``: known by its file, folded as pooldoctor's
    runner = os.path.join(os.path.dirname(pooldoctor.__file__), "hosts", "inprocess", "runner.py")
    main = frame("__main__", runner, "main", 277)
    assert is_library(main)
    assert fold([main], "/srv/app")[0].folded == ("pooldoctor",)


def test_a_library_run_as_main_is_folded_under_its_package() -> None:
    # a Celery worker started as ``python -m celery`` has celery/__main__.py at its bottom
    main = frame("__main__", "/v/lib/python3.12/site-packages/celery/__main__.py", "main", 3)
    assert is_library(main)
    assert fold([main], "/srv/app")[0].folded == ("celery",)


# A wrapper's run, outermost first: the wrapper calls asyncio.run, whose loop runs the probe task
# pooldoctor hands it, whose query goes through asgiref to Django.
PROBE = frame("pooldoctor.core.probes.task", "/v/site-packages/pooldoctor/core/probes/task.py",
              "probe_task", 108)  # fmt: skip
WRAPPED_RUN = [
    frame("celery.app.trace", "/v/site-packages/celery/app/trace.py"),
    frame("shop.celery", "/srv/app/shop/celery.py", "run", 9),
    frame("asyncio.runners", "/usr/lib/python3.12/asyncio/runners.py"),
    PROBE,
    frame("asgiref.sync", "/v/site-packages/asgiref/sync.py"),
    frame("django.db.backends.base.base", "/v/site-packages/django/db/backends/base/base.py"),
]


def test_under_a_wrapper_the_site_is_the_wrapper_s_line_not_the_probe() -> None:
    site = project_frame(WRAPPED_RUN)
    assert site is not None
    assert (site.file, site.line, site.function) == ("/srv/app/shop/celery.py", 9, "run")
    # AND the probe stays in the stack, folded with the library frames it sits among
    entries = fold(WRAPPED_RUN, "/srv/app")
    assert [(e.file, e.line, e.folded, e.frames) for e in entries] == [
        (None, None, ("django", "asgiref", "pooldoctor", "asyncio"), 4),
        ("shop/celery.py", 9, (), 1),
        (None, None, ("celery",), 1),
    ]


def test_under_a_built_in_mode_the_probe_stands_in_for_the_project() -> None:
    # no project code runs under a mode: the probe's own query line is the site
    mode_run = [
        frame("asyncio.runners", "/usr/lib/python3.12/asyncio/runners.py"),
        *WRAPPED_RUN[3:],
    ]
    assert project_frame(mode_run) is None
    assert project_frame(mode_run, stand_ins=True) == PROBE
    # AND a stack with project code still prefers the probe, the innermost of the two
    assert project_frame(WRAPPED_RUN, stand_ins=True) == PROBE
    entries = fold(WRAPPED_RUN, "/srv/app", stand_ins=True)
    assert [(e.file, e.line) for e in entries if not e.folded] == [
        ("pooldoctor/core/probes/task.py", 108),
        ("shop/celery.py", 9),
    ]


def test_the_innermost_project_frame_is_the_site() -> None:
    stack = [
        frame("celery.app.trace", "/v/site-packages/celery/app/trace.py"),
        frame("shop.celery", "/srv/app/shop/celery.py", "run", 9),
        frame("shop.tasks", "/srv/app/shop/tasks.py", "refresh_prices", 42),
        frame("django.db.backends.base.base", "/v/site-packages/django/db/backends/base/base.py"),
    ]
    site = project_frame(stack)
    assert site is not None
    assert (site.function, site.line) == ("refresh_prices", 42)
    assert project_frame(stack[:1]) is None


def test_fold_keeps_project_frames_and_folds_library_runs_innermost_first() -> None:
    stack = [
        frame("celery.app.trace", "/v/site-packages/celery/app/trace.py"),
        frame("shop.celery", "/srv/app/shop/celery.py", "run", 9),
        frame("asyncio.runners", "/usr/lib/python3.12/asyncio/runners.py"),
        frame("shop.tasks", "/srv/app/shop/tasks.py", "refresh_prices", 42),
        frame("asgiref.sync", "/v/site-packages/asgiref/sync.py"),
        frame("django.db.backends.base.base", "/v/site-packages/django/db/backends/base/base.py"),
    ]
    entries = fold(stack, "/srv/app")
    assert [(e.file, e.line, e.folded, e.frames) for e in entries] == [
        (None, None, ("django", "asgiref"), 2),
        ("shop/tasks.py", 42, (), 1),
        (None, None, ("asyncio",), 1),
        ("shop/celery.py", 9, (), 1),
        (None, None, ("celery",), 1),
    ]


def test_paths_are_relative_to_the_project_pooldoctor_s_by_module_others_absolute() -> None:
    assert display_path("/srv/app/shop/tasks.py", "/srv/app") == "shop/tasks.py"
    assert (
        display_path(
            "/v/site-packages/pooldoctor/core/probes/task.py",
            "/srv/app",
            "pooldoctor.core.probes.task",
        )
        == "pooldoctor/core/probes/task.py"
    )
    # pooldoctor's own files by their module path, wherever it runs from (the runner is __main__)
    own = os.path.join(os.path.dirname(pooldoctor.__file__), "hosts", "inprocess", "runner.py")
    assert display_path(own, "/srv/app", "__main__") == "pooldoctor/hosts/inprocess/runner.py"
    assert display_path("/elsewhere/x.py", "/srv/app", "other") == "/elsewhere/x.py"
    # a module outside the root does not pass for a file of it, even where its path would fit
    assert display_path("/srv/lib/shop/tasks.py", "/srv/app", "shop.tasks") == (
        "/srv/lib/shop/tasks.py"
    )
    assert display_path("/srv/application/x.py", "/srv/app", "x") == "/srv/application/x.py"
    assert display_path("<string>", "/srv/app") == "<string>"


def test_only_paths_below_the_root_and_of_the_project_are_in_its_tree() -> None:
    assert in_project_tree("shop/tasks.py")
    assert in_project_tree("tasks.py")
    for outside in (
        None,
        "",
        "/srv/lib/shop/tasks.py",  # outside the root: shown absolute
        "../lib/shop/tasks.py",
        "<string>",
        "pooldoctor/core/probes/task.py",  # pooldoctor's own (the probe standing in)
        ".venv/lib/python3.12/site-packages/shop/tasks.py",
        "debian/dist-packages/x.py",
    ):
        assert not in_project_tree(outside), outside


def test_the_process_wide_executor_is_asgirefs_own() -> None:
    # the name the role is keyed on exists in the asgiref this runs with
    assert SyncToAsync.single_thread_executor is not None


def test_a_comprehension_frame_takes_the_name_of_the_function_around_it() -> None:
    # Python 3.11 runs a comprehension in a frame named <listcomp>
    stack = [
        frame("shop.tasks", "/srv/app/shop/tasks.py", "refresh_prices", 40),
        frame("shop.tasks", "/srv/app/shop/tasks.py", "<listcomp>", 42),
        frame("django.db.models.query", "/v/site-packages/django/db/models/query.py"),
    ]
    site = project_frame(stack)
    assert site is not None
    assert (site.function, site.line) == ("refresh_prices", 42)


def test_a_console_script_is_not_the_project() -> None:
    # bin/celery or bin/pytest start the process; they are not the project's code
    script = os.path.join(sysconfig.get_path("scripts"), "celery")
    assert is_library(frame("__main__", script, "<module>", 8))
