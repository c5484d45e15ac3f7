"""Each connection's life in time (the HTML report's timeline), measured by the ledger.

GIVEN the demo's project (the blog recipe's wrapper) checked on the real PostgreSQL, THEN its
timeline shows each lost connection ending when its thread ended, as many as the pool itself
counts as gone (psycopg_pool's own ``get_stats()``, an independent count), and the fix's proof run
shows every checkout returning. The span rules themselves are unit-tested with hand-built
checkouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import by_subject, pooldoctor

from pooldoctor.core.census import _span_end, _span_kind
from pooldoctor.core.forensics.sites import Cause, Checkout
from pooldoctor.core.forensics.threads import ThreadLife
from pooldoctor.core.model import SpanEnd, Timeline, from_dict

WRAPPER = "mysite.celeryapp:async_task()"


@pytest.fixture(scope="module")
def demo(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import json

    out = tmp_path_factory.mktemp("demo") / "demo.json"
    proc = pooldoctor("demo", "--database", database_url, "-o", str(out), cwd=out.parent)
    assert out.exists(), proc.stderr
    return dict(json.loads(out.read_text()))


def timeline_of(result: dict[str, Any]) -> Timeline:
    assert result["timeline"] is not None, result["subject"]
    return from_dict(Timeline, result["timeline"])


def test_the_recipes_lost_connections_end_when_their_threads_end(demo: dict[str, Any]) -> None:
    result = by_subject(demo)[WRAPPER]
    timeline = timeline_of(result)
    lost = [s for s in timeline.spans if s.end is SpanEnd.LOST]
    # As many as the pool itself counts out and never back (size - available after the run).
    pool = result["evidence"]["census"][-1]["pool"]
    assert len(lost) == result["lost_slots"] == pool["size"] - pool["available"] == 4
    for span in lost:
        assert span.thread_ended is not None and span.ended == span.thread_ended
        assert span.checked_out < span.ended <= timeline.duration
        assert span.thread_role == "ThreadSensitiveContext executor"
    # One thread per task, each ended: four lanes, four tasks.
    assert len({s.thread for s in lost}) == 4
    assert len({s.task for s in lost}) == 4


def test_spans_sit_inside_their_tasks_and_tasks_carry_their_outcome(
    demo: dict[str, Any],
) -> None:
    result = by_subject(demo)[WRAPPER]
    timeline = timeline_of(result)
    tasks = {t.label: t for t in timeline.tasks}
    assert len(tasks) == result["tasks"]
    failed = {t.label for t in timeline.tasks if t.ok is False}
    # the probe's planned failure, and the task stopped when the pool ran dry
    assert len(failed) == result["failed_tasks"] == 2
    for span in timeline.spans:
        task = tasks[span.task or ""]
        assert task.ended is not None
        assert task.started <= span.checked_out <= task.ended
    # The recipe's thread outlives its task by a moment: that is the leak's story.
    assert all(
        s.ended is not None and s.ended >= tasks[s.task or ""].started for s in timeline.spans
    )


def test_the_fixs_proof_run_returns_every_checkout(demo: dict[str, Any]) -> None:
    fix = by_subject(demo)[WRAPPER]["fix"]
    assert (fix["applied_to"], fix["measured"]) == (WRAPPER, "clean")
    timeline = from_dict(Timeline, fix["timeline"])
    assert timeline.spans and {s.end for s in timeline.spans} == {SpanEnd.RETURNED}
    for span in timeline.spans:
        assert span.ended is not None and span.checked_out <= span.ended


def test_a_clean_mode_returns_each_connection_it_reuses(demo: dict[str, Any]) -> None:
    timeline = timeline_of(by_subject(demo)["async-to-sync"])
    assert {s.end for s in timeline.spans} == {SpanEnd.RETURNED}
    # The pool hands the same connection object out again: fewer connections than checkouts.
    assert len({s.connection for s in timeline.spans}) < len(timeline.spans)


def test_saved_reports_without_timelines_still_load(demo: dict[str, Any], tmp_path: Path) -> None:
    import json

    for result in demo["results"]:
        result.pop("timeline")
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps(demo))
    proc = pooldoctor("report", str(saved), "--format", "json", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert all(r["timeline"] is None for r in json.loads(proc.stdout)["results"])


# --- the span rules -------------------------------------------------------------------------


def checkout(**changes: Any) -> Checkout:
    life = ThreadLife("ThreadPoolExecutor-1_0", "ThreadSensitiveContext executor")
    life.ended = changes.pop("thread_ended", None)
    return Checkout(stack=(), thread=life, task="task 1 (ok)", at=1.0, **changes)


@pytest.mark.parametrize(
    ("made", "cause", "pooled", "kind", "ended"),
    [
        ({"returned": 1.5}, None, True, SpanEnd.RETURNED, 1.5),
        ({"thread_ended": 1.2}, Cause.ORPHANED, True, SpanEnd.LOST, 1.2),
        # collected after its thread ended: lost when the thread ended, the earlier moment
        ({"thread_ended": 1.2, "died": 1.9}, Cause.COLLECTED, True, SpanEnd.LOST, 1.2),
        ({"died": 1.7}, Cause.COLLECTED, True, SpanEnd.LOST, 1.7),
        ({}, Cause.DROPPED, True, SpanEnd.LOST, None),
        ({}, Cause.HELD, True, SpanEnd.HELD, None),
        ({}, Cause.HELD, False, SpanEnd.OPEN, None),  # a persistent connection, no pool
        ({"returned": 1.5}, None, False, SpanEnd.RETURNED, 1.5),  # closed, no pool
    ],
)
def test_how_a_checkout_ends(
    made: dict[str, Any], cause: Cause | None, pooled: bool, kind: SpanEnd, ended: float | None
) -> None:
    c = checkout(**made)
    assert _span_kind(c, cause, object() if pooled else None) is kind
    assert _span_end(c, cause) == ended
