"""In-process: a plain callable, called in this thread, as a script or a management command calls
it. ``check`` runs each subject in a fresh process of this host (:mod:`.isolation` starts them,
:mod:`.runner` is what they run)."""

from __future__ import annotations

import inspect
import platform
from collections.abc import Callable
from typing import Any

from pooldoctor.hosts.base import Host


class InProcessHost(Host):
    name = "inprocess"

    def version(self) -> str:
        return platform.python_version()

    def owns(self, obj: Any) -> bool:
        return callable(obj) and not inspect.isclass(obj)

    def runner(self, task: Any) -> Callable[..., Any]:
        return task

    def refusal(self, task: Any) -> str | None:
        if inspect.iscoroutinefunction(task):
            return "an async function that nothing wraps, so calling it only creates a coroutine"
        return None
