"""A Celery task decorator placed directly on an ``async def``.

Celery (5.x) calls the task function and gets a coroutine back; nothing awaits it, so the task
"succeeds" without running its body, and Python warns "coroutine ... was never awaited" in the
worker's log at best (celery/app/trace.py, ``build_tracer``: ``fun(*args, **kwargs)``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import celery_tasks, is_celery_task_decorator

FIX = (
    "keep the task sync and run the coroutine from it with a wrapper that measured clean "
    "(see pooldoctor check)"
)


NEEDS = (("async def", "task"),)


@register(__name__, "PD306", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "async def" not in source.text or source.tree is None:
        return
    for task in celery_tasks(source.tree):
        # Decorators apply bottom up: one below the task decorator (@async_to_sync, a project's
        # run_async) hands Celery a sync function.
        if isinstance(task, ast.AsyncFunctionDef) and is_celery_task_decorator(
            task.decorator_list[-1]
        ):
            yield Hit(
                task.lineno,
                task.col_offset + 1,
                f"Celery task {task.name!r} is an async def: Celery calls it and never awaits "
                "the coroutine, so its body never runs",
            )
