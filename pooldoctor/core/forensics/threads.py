"""The threads that check connections out: what kind each is, and when it ended.

A Django connection belongs to the thread that opened it, so a thread that ends with its
connection checked out takes the only code that could return it with it. The moment a thread ends
is caught without polling: an object stored in a ``threading.local`` is released when its thread
finishes, and a ``weakref.finalize`` on it records the time.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from types import FrameType
from typing import Any

from pooldoctor.core.forensics.stacks import Captured, RawFrame

MAIN = "main thread"
PROCESS_WIDE = "process-wide sync_to_async executor"
THREAD_SENSITIVE_CONTEXT = "ThreadSensitiveContext executor"
LOOP_EXECUTOR = "asyncio default executor"
CELERY = "Celery worker thread"
EXECUTOR = "executor thread"
OTHER = "thread"
CALLER = "thread blocked in async_to_sync"
_FUTURES_THREAD = "concurrent.futures.thread"
_EXECUTORS = {
    "context": THREAD_SENSITIVE_CONTEXT,
    "process": PROCESS_WIDE,
    "loop": LOOP_EXECUTOR,
    "caller": CALLER,
}


@dataclasses.dataclass
class ThreadLife:
    """One thread that checked a connection out."""

    name: str
    role: str
    ended: float | None = None
    """``time.monotonic()`` when the thread finished, once it has."""


class _Sentinel:
    """Stored per thread; its release marks the thread's end."""

    __slots__ = ("__weakref__",)


class ThreadRegistry:
    """Hands out one :class:`ThreadLife` per thread, ended when the thread ends."""

    def __init__(self) -> None:
        self._local = threading.local()

    def current(self, captured: Captured | None = None) -> ThreadLife:
        life: ThreadLife | None = getattr(self._local, "life", None)
        if life is None:
            thread = threading.current_thread()
            role = _EXECUTORS.get(captured.executor) if captured and captured.executor else None
            stack = captured.stack if captured else ()
            life = ThreadLife(name=thread.name, role=role or thread_role(thread, stack))
            sentinel = _Sentinel()
            self._local.life, self._local.sentinel = life, sentinel
            weakref.finalize(sentinel, _mark_ended, life)
        return life


def _mark_ended(life: ThreadLife) -> None:
    life.ended = time.monotonic()


def _own_executor() -> Any:
    """The ThreadPoolExecutor whose worker this thread is, read from the worker's own frame (the
    executor's thread set is filled only after the thread starts, too late to ask it)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_worker" and frame.f_globals.get("__name__") == _FUTURES_THREAD:
            reference = frame.f_locals.get("executor_reference")
            return reference() if reference is not None else None
        frame = frame.f_back
    return None


def thread_role(thread: threading.Thread, stack: Sequence[RawFrame] = ()) -> str:
    """What kind of thread this is, in the words of asgiref, asyncio and Celery."""
    if thread is threading.main_thread():
        return MAIN
    from asgiref.sync import SyncToAsync

    executor = _own_executor() if thread is threading.current_thread() else None
    if executor is not None:
        if executor is SyncToAsync.single_thread_executor:
            return PROCESS_WIDE
        if any(executor is e for e in list(SyncToAsync.context_to_thread_executor.values())):
            return THREAD_SENSITIVE_CONTEXT
    if thread.name.startswith("asyncio_"):
        return LOOP_EXECUTOR
    if any(frame.module.startswith("celery.concurrency.thread") for frame in stack):
        return CELERY
    if thread.name.startswith("ThreadPoolExecutor-"):
        return EXECUTOR
    return OTHER
