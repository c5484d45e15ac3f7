"""The rewrites, on real modules written to a temporary project: no Django setup, no database.

Each wrapper has the shape of one found in public projects; the diff is checked line by line.
"""

from __future__ import annotations

import functools
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pooldoctor.core.fixes import CannotPatch
from pooldoctor.core.fixes.diff import unified
from pooldoctor.core.fixes.load import load_patched
from pooldoctor.core.fixes.patch import Patch, fit
from pooldoctor.core.fixes.prove import wire
from pooldoctor.core.fixes.source import locate

BOTH = ("async-to-sync", "thread-sensitive-context-closed")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("shapes_")]:
        del sys.modules[name]


def module(root: Path, name: str, text: str) -> Any:
    (root / f"{name}.py").write_text(textwrap.dedent(text).lstrip("\n"))
    importlib.invalidate_caches()
    return importlib.import_module(name)


def patch_of(root: Path, name: str, text: str, attr: str, clean: tuple[str, ...] = BOTH) -> Patch:
    mod = module(root, name, text)
    return fit(locate(getattr(mod, attr), root), clean, root)


def changed(patch: Patch) -> list[str]:
    """The diff's lines without its context lines."""
    return [line for line in unified(patch).splitlines() if line[:1] in "+-@"]


ASYNCIO_RUN = """
    import asyncio
    import functools


    def celery_async(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return asyncio.run(func(*args, **kwargs))

        return wrapper
"""


def test_asyncio_run_becomes_async_to_sync_with_a_close_in_finally(project: Path) -> None:
    patch = patch_of(project, "shapes_run", ASYNCIO_RUN, "celery_async")

    assert patch.pattern == "async-to-sync"
    assert changed(patch) == [
        "--- a/shapes_run.py",
        "+++ b/shapes_run.py",
        "@@ -1,10 +1,16 @@",
        "+",
        "+from asgiref.sync import async_to_sync",
        "+from django.db import close_old_connections",
        "-        return asyncio.run(func(*args, **kwargs))",
        "+        try:",
        "+            return async_to_sync(func)(*args, **kwargs)",
        "+        finally:",
        "+            close_old_connections()",
    ]
    assert patch.imports == (
        "from asgiref.sync import async_to_sync",
        "from django.db import close_old_connections",
    )
    assert patch.first_line == 8  # def at line 5, three lines added above it


def test_run_until_complete_in_a_try_gets_the_close_in_its_finally(project: Path) -> None:
    text = """
        import asyncio

        from django.db import connection


        def celery_sync(func):
            def wrapper(*args, **kwargs):
                loop = asyncio.new_event_loop()
                try:
                    return loop.run_until_complete(func(*args, **kwargs))
                finally:
                    loop.close()
                    connection.close()

            return wrapper
    """
    patch = patch_of(project, "shapes_loop", text, "celery_sync")

    assert changed(patch)[2:] == [
        "@@ -1,15 +1,17 @@",
        "-from django.db import connection",
        "+from asgiref.sync import async_to_sync",
        "+from django.db import close_old_connections, connection",
        "-            return loop.run_until_complete(func(*args, **kwargs))",
        "+            return async_to_sync(func)(*args, **kwargs)",
        "+            close_old_connections()",
    ]


ASYNC_TO_SYNC = """
    from asgiref.sync import async_to_sync


    def async_to_sync_task(func):
        def wrapper(*args, **kwargs):
            return async_to_sync(func)(*args, **kwargs)

        return wrapper
"""


def test_async_to_sync_without_cleanup_is_wrapped_in_try_finally(project: Path) -> None:
    patch = patch_of(project, "shapes_a2s", ASYNC_TO_SYNC, "async_to_sync_task")

    assert changed(patch)[2:] == [
        "@@ -1,8 +1,12 @@",
        "+from django.db import close_old_connections",
        "-        return async_to_sync(func)(*args, **kwargs)",
        "+        try:",
        "+            return async_to_sync(func)(*args, **kwargs)",
        "+        finally:",
        "+            close_old_connections()",
    ]


def test_an_async_to_sync_object_is_recognised_too(project: Path) -> None:
    # The shape of the "async_task(app, ...)" helpers: sync.AsyncToSync(func) called later.
    text = """
        from functools import wraps

        from asgiref import sync


        def async_task(func):
            sync_call = sync.AsyncToSync(func)

            @wraps(func)
            def decorated(*args, **kwargs):
                return sync_call(*args, **kwargs)

            return decorated
    """
    patch = patch_of(project, "shapes_bridge", text, "async_task")

    assert "+            return sync_call(*args, **kwargs)" in changed(patch)
    assert "+            close_old_connections()" in changed(patch)


def test_a_close_in_the_wrong_thread_keeps_its_finally(project: Path) -> None:
    text = """
        import asyncio
        import functools

        from django.db import close_old_connections


        def run_async_task(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                close_old_connections()
                try:
                    return asyncio.run(func(*args, **kwargs))
                finally:
                    close_old_connections()

            return wrapper
    """
    patch = patch_of(project, "shapes_wrong_thread", text, "run_async_task")

    assert changed(patch)[2:] == [
        "@@ -1,6 +1,7 @@",
        "+from asgiref.sync import async_to_sync",
        "@@ -9,7 +10,7 @@",
        "-            return asyncio.run(func(*args, **kwargs))",
        "+            return async_to_sync(func)(*args, **kwargs)",
    ]


RECIPE = """
    import asyncio
    import functools

    from asgiref.sync import ThreadSensitiveContext
    from django.db import close_old_connections


    def recipe(async_func):
        @functools.wraps(async_func)
        def sync_wrapper(*args, **kwargs):
            async def wrapped_with_context():
                async with ThreadSensitiveContext():
                    return await async_func(*args, **kwargs)

            try:
                close_old_connections()
                return asyncio.run(wrapped_with_context())
            finally:
                close_old_connections()

        return sync_wrapper
"""


def test_the_context_recipe_closes_on_the_context_thread(project: Path) -> None:
    patch = patch_of(project, "shapes_recipe", RECIPE, "recipe")

    assert patch.pattern == "thread-sensitive-context-closed"
    assert changed(patch)[2:] == [
        "@@ -1,7 +1,7 @@",
        "-from asgiref.sync import ThreadSensitiveContext",
        "+from asgiref.sync import ThreadSensitiveContext, sync_to_async",
        "@@ -10,7 +10,10 @@",
        "-                return await async_func(*args, **kwargs)",
        "+                try:",
        "+                    return await async_func(*args, **kwargs)",
        "+                finally:",
        "+                    await sync_to_async(close_old_connections)()",
    ]


def test_asyncio_run_gets_a_closed_context_when_only_that_measured_clean(project: Path) -> None:
    patch = patch_of(
        project, "shapes_run_ctx", ASYNCIO_RUN, "celery_async", ("thread-sensitive-context-closed",)
    )

    assert patch.pattern == "thread-sensitive-context-closed"
    assert patch.function.splitlines()[3:11] == [
        "        async def in_context():",
        "            async with ThreadSensitiveContext():",
        "                try:",
        "                    return await func(*args, **kwargs)",
        "                finally:",
        "                    await sync_to_async(close_old_connections)()",
        "",
        "        return asyncio.run(in_context())",
    ]


def test_a_factory_and_a_decorator_calling_a_helper_are_followed(project: Path) -> None:
    text = """
        import asyncio


        def _run(func):
            def runner(*args):
                return asyncio.run(func(*args))

            return runner


        def task(**options):
            def inner(func):
                return _run(func)

            return inner
    """
    mod = module(project, "shapes_helper", text)
    patch = fit(locate(mod.task(), project), BOTH, project)

    assert patch.source.function == "_run"
    assert "+            return async_to_sync(func)(*args)" in changed(patch)


def test_the_project_file_and_module_are_left_as_they_were(project: Path) -> None:
    patch = patch_of(project, "shapes_load", ASYNCIO_RUN, "celery_async")
    before = (project / "shapes_load.py").read_bytes()
    original = sys.modules["shapes_load"].celery_async

    decorator = load_patched(wire("shapes_load:celery_async", patch))

    assert (project / "shapes_load.py").read_bytes() == before
    assert sys.modules["shapes_load"].celery_async is original
    assert "async_to_sync" not in vars(sys.modules["shapes_load"])
    assert decorator is not original
    assert decorator.__code__.co_filename == str(project / "shapes_load.py")
    # the rewritten definition compiles at its line in the patched file
    assert decorator.__code__.co_firstlineno == patch.first_line


def test_a_factory_is_loaded_against_the_rewritten_helper(project: Path) -> None:
    text = """
        import asyncio


        def _run(func):
            def runner(*args):
                return asyncio.run(func(*args))

            return runner


        def task():
            def inner(func):
                return _run(func)

            return inner
    """
    mod = module(project, "shapes_factory", text)
    patch = fit(locate(mod.task(), project), BOTH, project)

    decorator = load_patched(wire("shapes_factory:task()", patch))
    runner = decorator(lambda: None)

    assert runner.__code__.co_qualname == "_run.<locals>.runner"
    assert "async_to_sync" in runner.__code__.co_names
    assert "async_to_sync" not in mod._run(lambda: None).__code__.co_names


UNPATCHABLE = """
    import asyncio
    import functools


    class AsyncTask:
        def __call__(self, func):
            return lambda *args: asyncio.run(func(*args))


    as_object = AsyncTask()
    as_lambda = lambda func: lambda *args: asyncio.run(func(*args))  # noqa: E731
    as_partial = functools.partial(lambda func, n: func, n=1)


    def nothing_to_run(func):
        return func


    def two_places(func):
        def run(*args):
            asyncio.run(func(*args))
            return asyncio.run(func(*args))

        return run


    def a_coroutine_object(func):
        def run(*args):
            coroutine = func(*args)
            return asyncio.run(coroutine)

        return run


    def already_closed(func):
        from asgiref.sync import async_to_sync
        from django.db import close_old_connections

        def run(*args):
            try:
                return async_to_sync(func)(*args)
            finally:
                close_old_connections()

        return run
"""


@pytest.mark.parametrize(
    ("attr", "reason"),
    [
        ("as_object", "it is a callable object (an instance of AsyncTask), not a function"),
        ("as_lambda", "it is a lambda; pooldoctor rewrites a def"),
        ("as_partial", "it is a functools.partial, not a function defined in the project"),
        ("AsyncTask", "it is the class AsyncTask, not a function"),
        ("nothing_to_run", "no asyncio.run(), run_until_complete() or async_to_sync() call"),
        ("two_places", "it runs async code in 2 places (lines 3, 4 of its def)"),
        ("a_coroutine_object", "it calls asyncio.run(coroutine): pooldoctor rewrites a call"),
        ("already_closed", "already runs async_to_sync(func)(*args): pooldoctor has no smaller"),
    ],
)
def test_what_cannot_be_patched_says_why(project: Path, attr: str, reason: str) -> None:
    mod = module(project, "shapes_unpatchable", UNPATCHABLE)

    with pytest.raises(CannotPatch) as caught:
        fit(locate(getattr(mod, attr), project), BOTH, project)

    assert reason in str(caught.value)


@pytest.mark.parametrize("obj", [len, print, functools.reduce])
def test_built_in_functions_have_no_source(obj: Any) -> None:
    with pytest.raises(CannotPatch, match="built-in or C function"):
        locate(obj, Path.cwd())


def test_a_library_wrapper_is_outside_the_project(project: Path) -> None:
    from asgiref.sync import async_to_sync

    with pytest.raises(CannotPatch, match="outside the project directory"):
        locate(async_to_sync, project)


def test_only_a_pattern_that_measured_clean_is_proposed(project: Path) -> None:
    with pytest.raises(CannotPatch, match=r"\(thread-sensitive-context-closed\) did not measure"):
        patch_of(project, "shapes_not_clean", RECIPE, "recipe", ("async-to-sync",))
