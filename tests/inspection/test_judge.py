"""The inspect verdict rules on hand-built replies: no broker, no workers, no Django."""

from __future__ import annotations

from typing import Any

from pooldoctor.core.model import InspectReport, NodeStatus, PoolStats, Verdict
from pooldoctor.core.server import ServerRows, unavailable
from pooldoctor.core.verdict.live import judge, runs_dry_after

from .replies import CLEAN, LEAKY, NOT_INSTALLED, NOW, PINNED, process, reply, rows, session


def inspect(replies: dict[str, Any], pinged: tuple[str, ...] = (),
            destination: tuple[str, ...] = (), server: ServerRows | None = None
            ) -> InspectReport:  # fmt: skip
    return judge(replies, pinged or tuple(replies), destination,
                 server or rows(session(9001), session(9002)),
                 received_at=NOW, broker="redis://127.0.0.1:6379/0", timeout=2.0,
                 environment={"celery": "5.7"}, seconds=2.0)  # fmt: skip


def codes(report: InspectReport) -> list[str]:
    return [f.code for f in report.findings]


def test_leaking_node_is_leak_with_its_lost_slots_and_site() -> None:
    report = inspect({"leaky@host1": LEAKY, "clean@host2": CLEAN})
    clean, leaky = report.nodes  # by node name
    assert (leaky.node, leaky.verdict, clean.verdict) == (
        "leaky@host1",
        Verdict.LEAK,
        Verdict.CLEAN,
    )
    (p,) = leaky.processes
    assert (p.pid, p.lost, p.held, p.opened, p.tasks_until_exhaustion) == (4243, 3, 0, 4, 3)
    assert p.summary == "lost 3 pool slots in 10 tasks; the pool runs dry after 3 more tasks"
    assert p.leak_sites[0].file == "mysite/celeryapp.py"
    assert report.verdict is Verdict.LEAK
    assert report.headline == "LEAK: leaky@host1: pid 4243: " + p.summary + "."
    assert clean.summary == "1 process: nothing held, nothing lost"
    pd501 = report.findings[0]
    assert pd501.code == "PD501" and pd501.subject == "leaky@host1"
    assert "checked out at mysite/celeryapp.py:14 in run()" in pd501.message


def test_pinned_connection_names_its_holder_and_its_age_now() -> None:
    report = inspect({"pinned@host3": PINNED}, server=rows(session(9003, "idle in transaction")))
    (p,) = report.nodes[0].processes
    assert [s.state for s in p.server_sessions] == ["idle in transaction"]
    assert p.verdict is Verdict.PINNED
    (c,) = p.pinned
    # 10 s old in the snapshot, taken 2 s before the answers came in.
    assert (c.thread, c.held_seconds, c.transaction, c.backend_pid) == (
        "ThreadPoolExecutor-0_0",
        12.0,
        "intrans",
        9003,
    )
    assert p.summary == (
        "1 connection stays checked out between tasks, held by "
        "ThreadPoolExecutor-0_0 (process-wide sync_to_async executor) for 12 s"
    )
    assert codes(report) == ["PD502", "PD503"]


def test_server_sessions_matched_by_backend_pid_the_rest_grouped() -> None:
    server = rows(
        session(9001),
        session(9002),
        session(7000, app="psql"),
        session(7001, app="psql"),
        session(7002, "idle in transaction", app="cron"),
    )
    report = inspect({"leaky@host1": LEAKY, "clean@host2": CLEAN}, server=server)
    assert [s.pid for s in report.nodes[0].processes[0].server_sessions] == [9002]
    assert [s.pid for s in report.nodes[1].processes[0].server_sessions] == [9001]
    groups = [(g.application_name, g.state, g.count, g.pids) for g in report.server.unmatched]
    assert groups == [
        ("cron", "idle in transaction", 1, (7002,)),
        ("psql", "idle", 2, (7000, 7001)),
    ]
    assert report.server.sessions == 5
    assert "PD511" in codes(report)


def test_backend_the_server_no_longer_lists_is_gone() -> None:
    report = inspect({"clean@host2": CLEAN}, server=rows())
    assert report.nodes[0].processes[0].gone_from_server == (9002,)


def test_server_unavailable_is_a_note_not_a_verdict() -> None:
    report = inspect({"clean@host2": CLEAN}, server=unavailable("-", "no Django settings"))
    assert report.verdict is Verdict.CLEAN
    assert report.nodes[0].processes[0].gone_from_server == ()
    assert codes(report) == ["PD510"]


def test_not_installed_and_not_answering_are_errors() -> None:
    report = inspect({"plain@host4": NOT_INSTALLED}, pinged=("plain@host4", "slow@host5"),
                     destination=("plain@host4", "slow@host5", "ghost@nowhere"))  # fmt: skip
    status = {n.node: (n.status, n.verdict) for n in report.nodes}
    assert status == {
        "ghost@nowhere": (NodeStatus.NO_ANSWER, Verdict.ERROR),
        "plain@host4": (NodeStatus.NOT_INSTALLED, Verdict.ERROR),
        "slow@host5": (NodeStatus.NOT_INSTALLED, Verdict.ERROR),
    }
    assert report.nodes[0].summary.startswith("did not answer within 2 s")
    assert codes(report) == ["PD508", "PD507", "PD507"]
    assert report.verdict is Verdict.ERROR


def test_census_that_raised_is_failed() -> None:
    report = inspect({"odd@host6": {"error": "RuntimeError('disk full')"}})
    assert report.nodes[0].status is NodeStatus.FAILED
    assert report.nodes[0].summary == "the census failed: RuntimeError('disk full')"


def test_a_key_error_inside_the_census_is_a_failure_not_a_missing_install() -> None:
    # Only the KeyError of Celery's handler lookup for pooldoctor's command means "not installed"
    report = inspect({"odd@host6": {"error": "KeyError('lost')"}})
    assert report.nodes[0].status is NodeStatus.FAILED
    assert report.nodes[0].summary == "the census failed: KeyError('lost')"


def test_a_node_whose_processes_reported_nothing_is_not_clean() -> None:
    # GIVEN a worker that answers, but none of its processes could keep a census
    report = inspect({"mute@host7": reply("mute@host7")})
    # THEN it is an error, never a clean node by default
    [node] = report.nodes
    assert (node.status, node.verdict) == (NodeStatus.FAILED, Verdict.ERROR)
    assert node.summary.startswith("answered, but no worker process reported a census")
    assert report.verdict is Verdict.ERROR


def test_nobody_answered() -> None:
    report = inspect({}, pinged=())
    assert report.nodes == ()
    assert report.verdict is Verdict.ERROR
    assert report.headline == "ERROR: no worker answered within 2 s on redis://127.0.0.1:6379/0."
    assert codes(report) == ["PD509"]


def test_dry_pool_churn_and_inherited() -> None:
    dry = {**process(1, lost=2, held=2, opened=9, inherited=1, tasks=4)}
    report = inspect({"w@h": reply("w@h", dry)})
    (p,) = report.nodes[0].processes
    assert p.summary == (
        "lost 2 pool slots in 4 tasks; no pool slot is left: every task that "
        "needs a connection times out"
    )
    assert codes(report) == ["PD501", "PD502", "PD504", "PD505", "PD506"]


def test_main_process_first_then_children_by_pid() -> None:
    node = reply("w@h", process(9), process(3), process(5, main=True))
    report = inspect({"w@h": node})
    assert [(p.pid, p.main) for p in report.nodes[0].processes] == [
        (5, True),
        (3, False),
        (9, False),
    ]


def test_process_without_a_pool_loses_server_connections() -> None:
    report = inspect({"w@h": reply("w@h", process(1, lost=1, pool=None))})
    (p,) = report.nodes[0].processes
    assert p.summary == "lost 1 server connection in 10 tasks"
    assert p.tasks_until_exhaustion is None


def test_runs_dry_after() -> None:
    pool = PoolStats(0, 10, 10, 0, 0, 10, 5.0)
    assert runs_dry_after(pool, tasks=4, lost=2, held=0) == 16
    assert runs_dry_after(pool, tasks=4, lost=0, held=3) is None
    assert runs_dry_after(None, tasks=4, lost=2, held=0) is None
