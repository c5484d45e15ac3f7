"""The call stack of a checkout, as the project wrote it, not as the thread sees it.

A Django async ORM call checks its connection out on an executor thread, whose own stack is only
``threading`` and asgiref: the line that made the query sits in a coroutine on the event loop's
thread, suspended while it awaits the executor. :func:`capture` stitches the two together. On the
executor thread asgiref's ``SyncToAsync.thread_handler`` is running, with the ``loop`` and a
``task_context`` list that the awaiting ``SyncToAsync.__call__`` coroutine holds too; walking the
loop's tasks finds that coroutine, and its await chain gives the project's frames (asgiref
``sync.py``, ``SyncToAsync.__call__`` and ``thread_handler``). The awaiting coroutine cannot move
while its executor call runs, so what is read is stable.

The site of a checkout is the innermost frame of the project's own code. Under a built-in mode no
project code runs, and pooldoctor's probe task stands in for it (``stand_ins``); under the
project's wrapper or task the probe is pooldoctor's code like any other, folded into the stack and
never the site, so that the site is the wrapper's line that ran it.

Frames are kept raw and cheap: each checkout takes only the code object, the instruction offset and
the module name of every frame (a :class:`Stack`); file, line and function are read from them the
first time the stack is looked at, and classifying and folding happen only for the few checkouts
that end up in a report. Building a ``RawFrame`` per frame at every checkout, most of it for
``f_lineno``, was most of the cost of a capture.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import sysconfig
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import CodeType, FrameType
from typing import Any, NamedTuple, overload

from pooldoctor.core.model import StackEntry


class RawFrame(NamedTuple):
    file: str
    line: int
    function: str
    module: str


# Code that stands in for the project's own when a built-in mode runs (the synthetic task
# pooldoctor runs has no project code around it).
STAND_INS = frozenset({"pooldoctor.core.probes.task"})
_ASGIREF_SYNC = "asgiref.sync"
_LIBRARY_DIRS = ("site-packages", "dist-packages")
_SCRIPT_DIRS = frozenset({sysconfig.get_path("scripts"), os.path.dirname(sys.executable)})
# The ``pooldoctor`` package's directory (this file is pooldoctor/core/forensics/stacks.py).
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
# The demo projects shipped inside it (pooldoctor demo): a project's own code, even in
# site-packages.
_DEMO_DIR = _OWN_DIR + "demo" + os.sep


class Stack(Sequence[RawFrame]):
    """A captured call stack, outermost first: what each frame was running, taken at the checkout,
    read as :class:`RawFrame` s on first use (and kept)."""

    __slots__ = ("_resolved", "_taken")

    def __init__(self, taken: list[tuple[CodeType, int, Any]]) -> None:
        self._taken = taken
        """Per frame: its code, its last instruction's offset (``f_lasti``), its module's name."""
        self._resolved: tuple[RawFrame, ...] | None = None

    def frames(self) -> tuple[RawFrame, ...]:
        # Two threads may resolve at once (a census and a new thread's first checkout): both get
        # the same frames, and either result may be kept.
        resolved = self._resolved
        if resolved is None:
            resolved = self._resolved = tuple(
                RawFrame(code.co_filename, _line(code, lasti), code.co_name, str(name))
                for code, lasti, name in self._taken
            )
        return resolved

    @overload
    def __getitem__(self, index: int) -> RawFrame: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[RawFrame, ...]: ...
    def __getitem__(self, index: int | slice) -> RawFrame | tuple[RawFrame, ...]:
        return self.frames()[index]

    def __len__(self) -> int:
        return len(self._taken)

    def __iter__(self) -> Iterator[RawFrame]:
        return iter(self.frames())

    def __reversed__(self) -> Iterator[RawFrame]:
        return reversed(self.frames())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stack):
            return self.frames() == other.frames()
        return isinstance(other, tuple) and self.frames() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Stack({self.frames()!r})"


@functools.lru_cache(maxsize=8192)
def _line(code: CodeType, lasti: int) -> int:
    """The line ``f_lineno`` gives for a frame of ``code`` stopped at offset ``lasti`` (0 when the
    instruction has none), as CPython's ``PyCode_Addr2Line`` finds it."""
    if lasti < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line or 0
    return 0


class Captured(NamedTuple):
    stack: Sequence[RawFrame]
    """The logical call stack, outermost first."""
    executor: str | None
    """Which executor asgiref chose for this call, read from the awaiting ``__call__``:
    ``context`` (a ThreadSensitiveContext's), ``process`` (the process-wide one), ``caller`` (the
    thread blocked in async_to_sync), ``loop`` (the event loop's default), or None when the code
    did not come through sync_to_async."""


def capture(skip: int = 1) -> Captured:
    """The logical call stack of the caller, across asgiref's hop to an executor thread."""
    frames = _frames(sys._getframe(skip))
    handler = _handler(frames)
    if handler is None:
        return Captured(_take(frames), None)
    local = frames[handler].f_locals
    loop, task_context = local.get("loop"), local.get("task_context")
    loop_frames = _loop_thread_frames(loop)
    call = _find_call(loop_frames, task_context)
    if call is not None:
        # The coroutine has not reached its ``await`` yet (a fresh executor thread can start
        # first): it is still on the loop thread's own stack.
        middle = loop_frames[: call + 1]
    else:
        awaiting = _awaiting(loop, task_context)
        call = len(awaiting) - 1 if awaiting else None
        middle = _until_loop(loop_frames) + awaiting
    # Either way the awaiting ``__call__`` (when found) is the last frame of ``middle``.
    stack = _take(frames[:handler] + middle + frames[handler:])
    return Captured(stack, _executor(middle[-1]) if call is not None else None)


def _handler(frames: list[FrameType]) -> int | None:
    """Where asgiref's ``SyncToAsync.thread_handler`` runs on this thread's stack, if it does."""
    for i in range(len(frames) - 1, -1, -1):
        frame = frames[i]
        if (
            frame.f_code.co_name == "thread_handler"
            and frame.f_globals.get("__name__") == _ASGIREF_SYNC
        ):
            return i
    return None


def _is_call(frame: FrameType, task_context: Any) -> bool:
    """Whether ``frame`` is the ``SyncToAsync.__call__`` that started this executor call."""
    return (
        frame.f_code.co_name == "__call__"
        and _module(frame) == _ASGIREF_SYNC
        and frame.f_locals.get("task_context") is task_context
    )


def _find_call(frames: list[FrameType], task_context: Any) -> int | None:
    # (_is_call tests the name first: reading a frame's f_locals builds a dict)
    return next((i for i, frame in enumerate(frames) if _is_call(frame, task_context)), None)


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


def _take(frames: Iterable[FrameType]) -> Stack:
    """What each frame is running, read now: frames themselves must not be kept (they hold their
    locals, connections included, alive)."""
    return Stack([(f.f_code, f.f_lasti, f.f_globals.get("__name__", "")) for f in frames])


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


def is_library(frame: RawFrame, *, stand_ins: bool = False) -> bool:
    """Django's, asgiref's, asyncio's, Celery's, pooldoctor's: anything but the project's code.
    With ``stand_ins`` (a built-in mode) pooldoctor's probe task counts as the project's."""
    return _is_library(frame.module, frame.file, stand_ins)


# Cached: a run that keeps losing connections asks again for the same frames after every task.
@functools.lru_cache(maxsize=4096)
def _is_library(module: str, file: str, stand_ins: bool) -> bool:
    if stand_ins and module in STAND_INS:
        return False
    if file.startswith(_DEMO_DIR):
        return False
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "pooldoctor":
        return True
    if file.startswith(_OWN_DIR):  # pooldoctor run as ``python -m`` is ``__main__``
        return True
    if file.startswith("<"):  # <frozen ...>, <string>
        return True
    if os.path.dirname(file) in _SCRIPT_DIRS:  # console scripts: bin/celery, bin/pytest
        return True
    return any(part in _LIBRARY_DIRS for part in file.split(os.sep))


# Before Python 3.12 a comprehension runs in a frame of its own, named after it.
_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


def project_frame(stack: Sequence[RawFrame], *, stand_ins: bool = False) -> RawFrame | None:
    """The innermost frame of the project's own code, named after the function it is in (a
    comprehension's own frame takes the name of the function around it). ``stand_ins``: the
    probe task counts as the project's code (a built-in mode, where no project code runs)."""
    frames = list(stack)
    for depth in range(len(frames) - 1, -1, -1):
        frame = frames[depth]
        if is_library(frame, stand_ins=stand_ins):
            continue
        outer = depth
        while frames[outer].function in _COMPREHENSIONS and outer > 0:
            if frames[outer - 1].file != frame.file:
                break
            outer -= 1
        return frame._replace(function=frames[outer].function)
    return None


def fold(stack: Sequence[RawFrame], cwd: str, *, stand_ins: bool = False) -> tuple[StackEntry, ...]:
    """The stack innermost first, each run of library frames folded into one entry naming the
    packages it went through (pooldoctor's probe task among them, unless ``stand_ins``)."""
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
        if is_library(frame, stand_ins=stand_ins):
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
    top = frame.module.partition(".")[0]
    if top == "__main__":  # ``python -m celery``: the package is the directory it runs from
        parts = frame.file.split(os.sep)
        found = [i for i, part in enumerate(parts[:-2]) if part in _LIBRARY_DIRS]
        return parts[found[-1] + 1] if found else os.path.basename(frame.file)
    return top or os.path.basename(frame.file)


def display_path(path: str, cwd: str, module: str = "") -> str:
    """A frame's file as a report shows it: relative to the project root ``cwd`` when inside it
    (what CI annotations need); pooldoctor's own files by their module's path
    (``pooldoctor/core/probes/task.py``, wherever pooldoctor is installed); anything else
    absolute, so that no path outside the root reads as one of the project's files."""
    if path.startswith("<"):
        return path
    absolute = os.path.abspath(path)
    if absolute.startswith(_OWN_DIR) and not absolute.startswith(_DEMO_DIR):
        return os.path.join("pooldoctor", os.path.relpath(absolute, _OWN_DIR))
    if module.partition(".")[0] == "pooldoctor":
        as_module = module.replace(".", os.sep)
        for candidate in (as_module + ".py", os.path.join(as_module, "__init__.py")):
            if absolute.endswith(os.sep + candidate):
                return candidate
    root = os.path.abspath(cwd).rstrip(os.sep) + os.sep
    if absolute.startswith(root):
        return os.path.relpath(absolute, root)
    return absolute


def in_project_tree(path: str | None) -> bool:
    """Whether a path as :func:`display_path` shows it is a file of the project's tree: relative
    to the root and below it, and neither an installed library's nor pooldoctor's own (both can
    sit below the root, in a virtualenv or when checking pooldoctor's own repository, but are
    never the project's code)."""
    if not path or path.startswith("<") or os.path.isabs(path):
        return False
    parts = path.replace(os.sep, "/").split("/")
    if parts[0] in ("..", "pooldoctor"):
        return False
    return not any(part in _LIBRARY_DIRS for part in parts)
