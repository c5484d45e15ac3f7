"""The probe as a Django task (a module of its own: the worker imports a task by its path, and the
worker module itself runs as ``__main__``). Imported only in a simulate worker, after its TASKS
has pooldoctor's backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pooldoctor.hosts.tasks.compat import task

RUN: Callable[[str], Any] | None = None
"""The subject (a mode or the project's wrapper around the probe), set by the worker module."""


# The worker imports a task by its function's path: the Task must be what that name holds.
@task(backend="pooldoctor")
def probe(kind: str) -> Any:
    assert RUN is not None, "the probe runs only in pooldoctor's worker"
    return RUN(kind)
