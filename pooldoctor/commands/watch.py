"""``pooldoctor inspect --watch``: ask the fleet again every interval until Ctrl-C.

On a terminal the report's table is redrawn in place (rich's ``Live``); anywhere else (a pipe, a
file, ``--format json``) one whole report is written per interval, so a log keeps the history.
Ctrl-C reaches the caller as ``KeyboardInterrupt``; nothing here holds a connection between rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from pooldoctor.core.model import InspectReport
from pooldoctor.reporters.inspect import header_lines, table


def watch(
    ask: Callable[[], InspectReport],
    interval: float,
    emit: Callable[[InspectReport], None],
    *,
    live: Console | None = None,
    rounds: int | None = None,
) -> None:
    """Ask, show, wait ``interval`` s; ``rounds`` bounds it (None: until interrupted). With a
    ``live`` console the table is redrawn there; otherwise each report goes to ``emit``."""
    done = 0
    if live is None:
        while rounds is None or done < rounds:
            emit(ask())
            done += 1
            _pause(interval, done, rounds)
        return
    with Live(console=live, auto_refresh=False, transient=False) as screen:
        while rounds is None or done < rounds:
            screen.update(_frame(ask(), interval), refresh=True)
            done += 1
            _pause(interval, done, rounds)


def _frame(report: InspectReport, interval: float) -> Group:
    stamp = time.strftime("%H:%M:%S")
    return Group(
        *[Text(line) for line in header_lines(report)],
        table(report),
        Text(report.headline, style="bold"),
        Text(f"{stamp}: every {interval:g} s, Ctrl-C to stop", style="dim"),
    )


def _pause(interval: float, done: int, rounds: int | None) -> None:
    if rounds is None or done < rounds:
        time.sleep(interval)  # the interval the user asked for between two looks
