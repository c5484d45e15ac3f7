"""The call stack of a checkout, as the project wrote it, not as the thread sees it.

A Django async ORM call checks its connection out on an executor thread, whose own stack is only
``threading`` and asgiref: the line that made the query sits in a coroutine on the event loop's
thread, suspended while it awaits the executor. :func:`capture` stitches the two together. On the
executor thread asgiref's ``SyncToAsync.thread_handler`` is running, with the ``loop`` and a
``task_context`` list that the awaiting ``SyncToAsync.__call__`` coroutine holds too; walking the
loop's tasks finds that coroutine, and its await chain gives the project's frames (asgiref
``sync.py``, ``SyncToAsync.__call__`` and ``thread_handler``). The awaiting coroutine cannot move
while its executor call runs, so what is read is stable.

Frames are kept raw (file, line, function, module) and cheap; classifying and folding happen only
for the few checkouts that end up in a report.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any, NamedTuple

from pooldoctor.model import StackEntry


class RawFrame(NamedTuple):
    file: str
    line: int
    function: str
    module: str


# Code that stands in for the project's own (the synthetic task pooldoctor runs).
STAND_INS = frozenset({"pooldoctor.probes.task"})
_ASGIREF_SYNC = "asgiref.sync"
_LIBRARY_DIRS = ("site-packages", "dist-packages")
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class Captured(NamedTuple):
    stack: tuple[RawFrame, ...]
    """The logical call stack, outermost first."""
    executor: str | None
    """Which executor asgiref chose for this call, read from the awaiting ``__call__``:
    ``context`` (a ThreadSensitiveContext's), ``process`` (the process-wide one), ``caller`` (the
    thread blocked in async_to_sync), ``loop`` (the event loop's default), or None when the code
    did not come through sync_to_async."""


def capture(skip: int = 1) -> Captured:
    """The logical call stack of the caller, across asgiref's hop to an executor thread."""
    frames = _frames(sys._getframe(skip))
    handler = next(
        (
            i
            for i in range(len(frames) - 1, -1, -1)
            if frames[i].f_code.co_name == "thread_handler"
            and frames[i].f_globals.get("__name__") == _ASGIREF_SYNC
        ),
        None,
    )
    if handler is None:
        return Captured(_raw(frames), None)
    local = frames[handler].f_locals
    loop, task_context = local.get("loop"), local.get("task_context")
    loop_frames = _loop_thread_frames(loop)
    call = _find_call(loop_frames, task_context)
    if call is not None:
        # The coroutine has not reached its ``await`` yet (a fresh executor thread can start
        # first): it is still on the loop thread's own stack.
        middle = loop_frames[: call + 1]
    else:
        middle = _until_loop(loop_frames) + _awaiting(loop, task_context)
    stack = _raw(frames[:handler]) + _raw(middle) + _raw(frames[handler:])
    is_call = middle and _is_call(middle[-1], task_context)
    return Captured(stack, _executor(middle[-1]) if is_call else None)


def _is_call(frame: FrameType, task_context: Any) -> bool:
    """Whether ``frame`` is the ``SyncToAsync.__call__`` that started this executor call."""
    return (
        frame.f_code.co_name == "__call__"
        and _module(frame) == _ASGIREF_SYNC
        and frame.f_locals.get("task_context") is task_context
    )


def _find_call(frames: list[FrameType], task_context: Any) -> int | None:
    return next((i for i, f in enumerate(frames) if _is_call(f, task_context)), None)


def _executor(call: FrameType) -> str | None:
    """The kind of executor ``SyncToAsync.__call__`` picked, from its own locals (the executor's
    thread set is filled only after its first thread starts, too late to ask it)."""
    local = call.f_locals
    if not getattr(local.get("self"), "_thread_sensitive", True):
        return "loop" if local.get("executor") is None else None
    if local.get("current_thread_executor"):
        return "caller"
    if local.get("thread_sensitive_context") is not None:
        return "context"
    from asgiref.sync import SyncToAsync

    return "process" if local.get("executor") is SyncToAsync.single_thread_executor else None


def _frames(frame: FrameType | None) -> list[FrameType]:
    """``frame`` and its callers, outermost first."""
    found = []
    while frame is not None:
        found.append(frame)
        frame = frame.f_back
    found.reverse()
    return found


def _raw(frames: Iterable[FrameType]) -> tuple[RawFrame, ...]:
    return tuple(
        RawFrame(f.f_code.co_filename, f.f_lineno or 0, f.f_code.co_name, _module(f))
        for f in frames
    )


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _awaiting(loop: Any, task_context: Any) -> list[FrameType]:
    """The frames of the coroutine awaiting this executor call, outermost first."""
    try:
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:  # the loop's task set changed while we copied it
        return []
    for task in tasks:
        chain = _await_chain(task.get_coro())
        depth = _find_call(chain, task_context)
        if depth is not None:
            return chain[: depth + 1]
    return []


def _await_chain(awaitable: Any) -> list[FrameType]:
    """A coroutine's frame and the frames of what it awaits, outermost first."""
    chain: list[FrameType] = []
    while awaitable is not None and len(chain) < 200:
        frame = (
            getattr(awaitable, "cr_frame", None)
            or getattr(awaitable, "gi_frame", None)
            or getattr(awaitable, "ag_frame", None)
        )
        if frame is None:
            # ``async for`` awaits an async generator's asend(), which hides the generator.
            awaitable = _generator_behind(awaitable)
            if awaitable is None:
                break
            continue
        chain.append(frame)
        awaitable = (
            getattr(awaitable, "cr_await", None)
            or getattr(awaitable, "gi_yieldfrom", None)
            or getattr(awaitable, "ag_await", None)
        )
    return chain


def _generator_behind(awaitable: Any) -> Any:
    if type(awaitable).__name__ not in ("async_generator_asend", "async_generator_athrow"):
        return None
    return next((r for r in gc.get_referents(awaitable) if hasattr(r, "ag_frame")), None)


def _loop_thread_frames(loop: Any) -> list[FrameType]:
    """The stack of the thread running ``loop`` (who called ``asyncio.run`` and from where), when
    that is another thread."""
    ident = getattr(loop, "_thread_id", None)
    if ident is None or ident == threading.get_ident():
        return []
    frame = sys._current_frames().get(ident)
    return _frames(frame) if frame is not None else []


def _until_loop(frames: list[FrameType]) -> list[FrameType]:
    """The frames above the loop's ``run_forever``: below it is only the loop waiting."""
    for depth, frame in enumerate(frames):
        if frame.f_code.co_name == "run_forever" and _module(frame) == "asyncio.base_events":
            return frames[:depth]
    return frames


# -- classifying ---------------------------------------------------------------------------------


def is_library(frame: RawFrame) -> bool:
    """Django's, asgiref's, asyncio's, Celery's, pooldoctor's: anything but the project's code."""
    if frame.module in STAND_INS:
        return False
    top = frame.module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "pooldoctor":
        return True
    if frame.file.startswith(_OWN_DIR):  # pooldoctor run as ``python -m`` is ``__main__``
        return True
    if frame.file.startswith("<"):  # <frozen ...>, <string>
        return True
    return any(part in _LIBRARY_DIRS for part in frame.file.split(os.sep))


def project_frame(stack: Sequence[RawFrame]) -> RawFrame | None:
    """The innermost frame of the project's own code."""
    return next((f for f in reversed(stack) if not is_library(f)), None)


def fold(stack: Sequence[RawFrame], cwd: str) -> tuple[StackEntry, ...]:
    """The stack innermost first, each run of library frames folded into one entry naming the
    packages it went through."""
    entries: list[StackEntry] = []
    run: list[RawFrame] = []

    def flush() -> None:
        if run:
            packages = tuple(dict.fromkeys(_package(f) for f in run))
            entries.append(
                StackEntry(file=None, line=None, function=None, folded=packages, frames=len(run))
            )
            run.clear()

    for frame in reversed(stack):
        if is_library(frame):
            run.append(frame)
            continue
        flush()
        entries.append(
            StackEntry(
                file=display_path(frame.file, cwd, frame.module),
                line=frame.line,
                function=frame.function,
            )
        )
    flush()
    return tuple(entries)


def _package(frame: RawFrame) -> str:
    if frame.file.startswith(_OWN_DIR):
        return "pooldoctor"
    return frame.module.partition(".")[0] or os.path.basename(frame.file)


def display_path(path: str, cwd: str, module: str = "") -> str:
    """Relative to the project directory when inside it (what CI annotations need), else the
    module's own path (``pooldoctor/probes/task.py``), else as it is."""
    if path.startswith("<"):
        return path
    absolute = os.path.abspath(path)
    root = os.path.abspath(cwd).rstrip(os.sep) + os.sep
    if absolute.startswith(root):
        return os.path.relpath(absolute, root)
    as_module = module.replace(".", os.sep)
    for candidate in (as_module + ".py", os.path.join(as_module, "__init__.py")):
        if module and absolute.endswith(os.sep + candidate):
            return candidate
    return absolute
