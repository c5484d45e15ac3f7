"""Thread kinds and the moment a thread ends."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from pooldoctor.core.forensics import threads
from pooldoctor.core.forensics.threads import ThreadLife, ThreadRegistry


def test_a_thread_end_is_recorded_when_the_thread_finishes() -> None:
    registry = ThreadRegistry()
    lives: list[ThreadLife] = []
    worker = threading.Thread(target=lambda: lives.append(registry.current()), name="w")
    worker.start()
    worker.join()
    [life] = lives
    assert life.name == "w"
    assert life.ended is not None


def test_a_live_thread_has_not_ended_and_keeps_one_life() -> None:
    registry = ThreadRegistry()
    life = registry.current()
    assert registry.current() is life
    assert life.ended is None
    assert life.role == threads.MAIN


def test_roles_without_a_captured_stack_come_from_the_executor_itself() -> None:
    registry = ThreadRegistry()

    async def in_context() -> ThreadLife:
        async with ThreadSensitiveContext():
            return await sync_to_async(registry.current)()

    async def process_wide() -> ThreadLife:
        return await sync_to_async(registry.current)()

    async def default_executor() -> ThreadLife:
        return await sync_to_async(registry.current, thread_sensitive=False)()

    assert asyncio.run(in_context()).role == threads.THREAD_SENSITIVE_CONTEXT
    assert asyncio.run(process_wide()).role == threads.PROCESS_WIDE
    assert asyncio.run(default_executor()).role == threads.LOOP_EXECUTOR
    other: list[ThreadLife] = []
    worker = threading.Thread(target=lambda: other.append(registry.current()), name="plain")
    worker.start()
    worker.join()
    assert other[0].role == threads.OTHER
