"""Dramatiq: a host being written (issue 14); its worker, tasks and census come next."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pooldoctor.hosts.base import RunnerHost


class DramatiqHost(RunnerHost):
    name = "dramatiq"
    runner_name = "dramatiq"
    title = "Dramatiq"
    distribution = "dramatiq"
    pools = ('processes', 'threads')
    forking = frozenset(('processes',))
    uses_broker = True

    def owns(self, obj: Any) -> bool:
        return False

    def runner(self, task: Any) -> Callable[..., Any]:
        raise NotImplementedError

    def check_broker(self, url: str) -> None:
        pass

    def worker_command(self, spec: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def enqueue(
        self, spec: Mapping[str, Any], sent: Sequence[Mapping[str, Any]], subject: Any
    ) -> None:
        raise NotImplementedError
