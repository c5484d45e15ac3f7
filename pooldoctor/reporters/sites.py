"""Leak sites as text: the lines every human-facing output (terminal, JUnit, pytest) shows.

LOST    shop/tasks.py:42 in refresh_prices() via ThreadSensitiveContext executor
        (thread ended 3 ms after its task; connection garbage-collected while checked out)
        x17 connections, from task 1, task 2, task 3, task 4, task 5, ...
        stack: refresh_prices (shop/tasks.py:42) < [django, asgiref] < run (shop/celery.py:9)
"""

from __future__ import annotations

from pooldoctor.core.model import LeakSite, StackEntry

INDENT = " " * 8


def location(site: LeakSite) -> str:
    """``file:line in function()``, or what is known when no project frame was on the stack."""
    if site.file is None:
        return "(no frame of the project's own code on the stack)"
    return f"{site.file}:{site.line} in {site.function}()"


def site_lines(site: LeakSite) -> list[str]:
    lines = [
        f"{site.kind.value.upper():<8}{location(site)} via {site.thread}",
        f"{INDENT}({site.reason})",
    ]
    count = f"x{site.count} connection{'' if site.count == 1 else 's'}"
    if site.tasks:
        more = ", ..." if site.count > len(site.tasks) else ""
        count += f", from {', '.join(site.tasks)}{more}"
    lines.append(INDENT + count)
    if site.stack:
        lines.append(f"{INDENT}stack: {stack_line(site.stack)}")
    return lines


def stack_line(stack: tuple[StackEntry, ...]) -> str:
    """The checkout's stack on one line, innermost first, library frames folded."""
    return " < ".join(_entry(entry) for entry in stack)


def _entry(entry: StackEntry) -> str:
    if entry.folded:
        return f"[{', '.join(entry.folded)}]"
    return f"{entry.function} ({entry.file}:{entry.line})"
