"""--watch in-process: a live table redrawn on a terminal, or one report per interval."""

from __future__ import annotations

import io

from rich.console import Console

from pooldoctor.commands.watch import watch
from pooldoctor.core.model import InspectReport
from pooldoctor.core.verdict.live import judge

from .replies import CLEAN, LEAKY, NOW, rows


def fleet_report() -> InspectReport:
    return judge({"leaky@host1": LEAKY, "clean@host2": CLEAN}, ("leaky@host1", "clean@host2"),
                 (), rows(), received_at=NOW, broker="redis://127.0.0.1:6379/0", timeout=2.0,
                 environment={}, seconds=0.1)  # fmt: skip


def test_without_a_terminal_each_round_is_emitted_whole() -> None:
    asked: list[InspectReport] = []
    emitted: list[InspectReport] = []

    def ask() -> InspectReport:
        asked.append(fleet_report())
        return asked[-1]

    watch(ask, 0.0, emitted.append, rounds=3)
    assert emitted == asked
    assert len(emitted) == 3


def test_on_a_terminal_the_table_is_redrawn_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    emitted: list[InspectReport] = []
    watch(fleet_report, 0.0, emitted.append, live=console, rounds=2)
    text = out.getvalue()
    assert emitted == []  # nothing is emitted as a whole report
    # drawn once a round (rich draws the last frame once more when the display stops)
    assert text.count("every 0 s, Ctrl-C to stop") >= 2
    assert "leaky@host1" in text and "clean@host2" in text
    assert "\x1b[" in text  # the cursor moved back to redraw
