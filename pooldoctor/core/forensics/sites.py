"""From lost and pinned checkouts to leak sites: grouped by where they happened, counted, explained.

A site is the innermost frame of the project's own code on the checkout's stack plus the kind of
thread that ran it: seventeen tasks that lost their connection at ``shop/tasks.py:42`` on a
ThreadSensitiveContext executor are one site with a count of 17. Under a built-in mode, where no
project code runs, pooldoctor's probe task stands in for it (``stand_ins``); under the project's
wrapper the site is the wrapper's own line that ran the probe.
"""

from __future__ import annotations

import dataclasses
import enum
import linecache
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pooldoctor.core.forensics.stacks import RawFrame, display_path, fold, project_frame
from pooldoctor.core.forensics.threads import ThreadLife
from pooldoctor.core.model import LeakKind, LeakSite, SourceLine

_SHOWN = 5  # tasks and thread names listed per site
_AROUND = 3  # source lines shown either side of a site's line


class Cause(enum.Enum):
    COLLECTED = "connection garbage-collected while checked out"
    ORPHANED = "still checked out, and no thread is left to return it"
    DROPPED = "Django let go of the connection object without returning it to the pool"
    HELD = "held between tasks by a live thread, never returned"


@dataclasses.dataclass
class Checkout:
    """One checkout of a connection: who took it, where, for which task."""

    stack: Sequence[RawFrame]
    thread: ThreadLife
    task: str | None
    at: float
    returned: float | None = None
    connection: int = 0
    """The connection object's number in this process (for the timeline)."""
    inherited: bool = False
    """The connection came from the parent process with a fork."""
    died: float | None = None
    """When the connection object was collected while checked out."""


@dataclasses.dataclass(frozen=True)
class Loss:
    """A checkout that did not come back, and why."""

    checkout: Checkout
    cause: Cause
    detail: str = ""
    """Extra evidence for a pinned connection (its transaction, how long it has been out)."""


def leak_sites(
    losses: Iterable[Loss],
    task_ends: Mapping[str, float],
    cwd: str,
    unit: str = "task",
    *,
    stand_ins: bool = False,
) -> tuple[LeakSite, ...]:
    """Group losses by site, most frequent first; ``unit`` is what a label names (a task, or a
    test under the pytest plugin); ``stand_ins``: the probe task may be the site (a built-in
    mode's run, with no project code on the stack)."""
    groups: dict[tuple[LeakKind, str | None, int | None, str | None, str], list[Loss]] = {}
    for loss in losses:
        frame = project_frame(loss.checkout.stack, stand_ins=stand_ins)
        kind = LeakKind.PINNED if loss.cause is Cause.HELD else LeakKind.LOST
        key = (
            kind,
            frame.file if frame else None,
            frame.line if frame else None,
            frame.function if frame else None,
            loss.checkout.thread.role,
        )
        groups.setdefault(key, []).append(loss)
    sites = [
        _site(kind, role, group, task_ends, cwd, unit, stand_ins)
        for (kind, _, _, _, role), group in groups.items()
    ]
    return tuple(sorted(sites, key=lambda s: (s.kind.value, -s.count, s.file or "", s.line or 0)))


def _site(
    kind: LeakKind,
    role: str,
    group: list[Loss],
    task_ends: Mapping[str, float],
    cwd: str,
    unit: str,
    stand_ins: bool,
) -> LeakSite:
    group = sorted(group, key=lambda loss: loss.checkout.at)
    first = group[0].checkout
    frame = project_frame(first.stack, stand_ins=stand_ins)
    return LeakSite(
        kind=kind,
        file=display_path(frame.file, cwd, frame.module) if frame else None,
        line=frame.line if frame else None,
        function=frame.function if frame else None,
        thread=role,
        count=len(group),
        reason=_reason(group, task_ends, unit),
        tasks=_first(loss.checkout.task for loss in group if loss.checkout.task),
        thread_names=_first(loss.checkout.thread.name for loss in group),
        stack=fold(first.stack, cwd, stand_ins=stand_ins),
        excerpt=excerpt(frame.file, frame.line) if frame else (),
    )


def excerpt(path: str, line: int, around: int = _AROUND) -> tuple[SourceLine, ...]:
    """The source lines around ``line`` as they are now (the report keeps them: the file may
    change before anyone reads it); none when the file cannot be read."""
    first = max(1, line - around)
    lines = [(n, linecache.getline(path, n)) for n in range(first, line + around + 1)]
    while lines and not lines[-1][1]:  # past the end of the file
        lines.pop()
    return tuple(SourceLine(n, text.rstrip("\n")) for n, text in lines)


def _reason(group: list[Loss], task_ends: Mapping[str, float], unit: str) -> str:
    cause = Counter(loss.cause for loss in group).most_common(1)[0][0]
    parts = []
    delays = [
        loss.checkout.thread.ended - task_ends[loss.checkout.task]
        for loss in group
        if loss.checkout.thread.ended is not None
        and loss.checkout.task is not None
        and loss.checkout.task in task_ends
    ]
    if delays:
        ms = round(statistics.median(delays) * 1000)
        task = f"the {unit}" if len(group) == 1 else f"its {unit}"
        parts.append(
            f"thread ended {ms} ms after {task} returned"
            if ms >= 0
            else f"thread ended {-ms} ms before {task} returned"
        )
    elif any(loss.checkout.thread.ended is not None for loss in group):
        parts.append("thread ended")
    elif cause is Cause.COLLECTED:
        parts.append("thread still running")
    parts.append(cause.value)
    details = [loss.detail for loss in group if loss.detail]
    if details:
        parts.append(Counter(details).most_common(1)[0][0])
    return "; ".join(parts)


def _first(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))[:_SHOWN]
