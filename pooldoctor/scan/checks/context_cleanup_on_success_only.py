"""A per-task ``ThreadSensitiveContext`` whose cleanup runs on its thread, but only on success.

The cleanup is awaited after the task's body instead of in a ``finally``: a task that raises
(or is cancelled) skips it, and its ORM thread ends holding the connection. Failing tasks are
exactly the ones that leave transactions open (Django's ``close_old_connections`` is what closes
a connection whose autocommit was left off: ``BaseDatabaseWrapper.close_if_unusable_or_obsolete``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.checks.context_cleanup_outside import (
    cleanups_on_context_thread,
    confirm_hint,
    task_contexts,
)
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile

FIX = "move the awaited cleanup into a finally block inside the ThreadSensitiveContext"


NEEDS = ("ThreadSensitiveContext",)


@register(__name__, "PD304", Severity.ERROR, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    for block, parent_of in task_contexts(source):
        cleanups = list(cleanups_on_context_thread(block))
        if cleanups and not any(_in_finally(c, block, parent_of) for c in cleanups):
            yield Hit(
                cleanups[0].lineno,
                cleanups[0].col_offset + 1,
                "the connection cleanup inside ThreadSensitiveContext runs only when the task "
                "succeeds; a failing task's ORM thread ends holding its connection"
                + confirm_hint(source, block, parent_of),
            )


def _in_finally(node: ast.AST, block: ast.AST, parent_of: dict[ast.AST, ast.AST]) -> bool:
    child, current = node, parent_of.get(node)
    while current is not None and current is not block:
        if isinstance(current, ast.Try | ast.TryStar) and child in current.finalbody:
            return True
        child, current = current, parent_of.get(current)
    return False
