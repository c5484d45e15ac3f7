"""A Celery task decorator placed directly on an ``async def``.

Celery (5.x) calls the task function and gets a coroutine back; nothing awaits it, so the task
"succeeds" without running its body, and Python warns "coroutine ... was never awaited" in the
worker's log at best (celery/app/trace.py, ``build_tracer``: ``fun(*args, **kwargs)``).

The Tasks framework's ``@task`` (``django.tasks``, the ``django_tasks`` backport) is not
Celery's: it runs an ``async def`` with ``async_to_sync`` (django_tasks/base.py,
``Task.call``), and is not flagged.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import celery_tasks, dotted, is_celery_task_decorator, statements

FIX = (
    "keep the task sync and run the coroutine from it with a wrapper that measured clean "
    "(see pooldoctor check)"
)


TASKS_MODULES = ("django.tasks.", "django_tasks.")


NEEDS = (("async def", "task"),)


@register(__name__, "PD306", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if "async def" not in source.text or source.tree is None:
        return
    django_tasks = _django_task_names(source.tree)
    for task in celery_tasks(source.tree):
        if dotted(task.decorator_list[-1]).partition(".")[0] in django_tasks:
            continue
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


def _django_task_names(tree: ast.Module) -> set[str]:
    """Names imported from the Tasks framework (``from django.tasks import task``)."""
    found: set[str] = set()
    for node in statements(tree):
        if isinstance(node, ast.ImportFrom) and f"{node.module}.".startswith(TASKS_MODULES):
            found |= {a.asname or a.name for a in node.names}
    return found
