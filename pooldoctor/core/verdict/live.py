"""Pure rules: the fleet's replies and the server's rows in, verdicts and findings out.

A worker process's verdict uses ``check``'s words: ``leak`` (slots lost: connections given up
while checked out), ``pinned`` (connections checked out between tasks by live threads), ``clean``.
A node that did not answer, or answered without pooldoctor installed, is ``error``: it could not
be inspected. No Django, no broker: tests build replies by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pooldoctor.core.model import (
    Finding,
    InspectReport,
    NodeResult,
    NodeStatus,
    PinnedConnection,
    PoolStats,
    ProcessResult,
    ServerResult,
    ServerSession,
    SessionGroup,
    Severity,
    Timeline,
    Verdict,
    from_dict,
    leak_site_from_dict,
)
from pooldoctor.core.server import ServerRows
from pooldoctor.core.verdict import worst

# Connections opened per task above which the pool is being rebuilt rather than reused.
CHURN_PER_TASK = 0.5
IN_TRANSACTION = ("intrans", "inerror")


def judge(
    replies: Mapping[str, Mapping[str, Any]],
    pinged: Sequence[str],
    destination: Sequence[str],
    server: ServerRows,
    *,
    received_at: float,
    broker: str,
    timeout: float,
    environment: Mapping[str, str],
    seconds: float,
    problems: Sequence[str] = (),
) -> InspectReport:
    by_pid = {s.pid: s for s in server.sessions}
    names = sorted({*replies, *pinged, *destination})
    nodes = tuple(
        judge_node(name, replies.get(name), name in pinged, by_pid, server.available,
                   received_at, timeout)
        for name in names
    )  # fmt: skip
    claimed = {pid for n in nodes for p in n.processes for pid in p.backend_pids}
    unmatched = group_sessions([s for s in server.sessions if s.pid not in claimed])
    server_result = ServerResult(
        dsn=server.dsn,
        available=server.available,
        detail=server.detail,
        sessions=len(server.sessions),
        unmatched=unmatched,
    )
    verdict = worst([n.verdict for n in nodes]) if nodes else Verdict.ERROR
    return InspectReport(
        verdict=verdict,
        headline=headline(nodes, broker, timeout, problems),
        environment=dict(environment),
        broker=broker,
        timeout=timeout,
        destination=tuple(destination),
        nodes=nodes,
        server=server_result,
        findings=tuple(findings(nodes, server_result, bool(destination), timeout, problems)),
        seconds=seconds,
    )


def judge_node(
    name: str,
    reply: Mapping[str, Any] | None,
    pinged: bool,
    sessions: Mapping[int, ServerSession],
    server_available: bool,
    received_at: float,
    timeout: float,
) -> NodeResult:
    if reply is None:
        if pinged:
            return NodeResult(
                name, NodeStatus.NOT_INSTALLED, Verdict.ERROR,
                f"answered the ping but not the census within {timeout:g} s: "
                "pooldoctor.celery.install(app) is not in its Celery module",
            )  # fmt: skip
        return NodeResult(
            name, NodeStatus.NO_ANSWER, Verdict.ERROR,
            f"did not answer within {timeout:g} s: no live worker has this name, or its "
            "control thread is blocked",
        )  # fmt: skip
    if "processes" not in reply:
        error = str(reply.get("error", reply))
        # The host marks a reply that says the worker does not know the census command (Celery:
        # the KeyError of kombu's handler lookup); any other error is the census failing.
        if reply.get("installed") is False:
            return NodeResult(
                name, NodeStatus.NOT_INSTALLED, Verdict.ERROR,
                "answered without pooldoctor: pooldoctor.celery.install(app) is not in its "
                "Celery module",
            )  # fmt: skip
        return NodeResult(name, NodeStatus.FAILED, Verdict.ERROR, f"the census failed: {error}")
    if not reply["processes"]:
        # Every process that runs tasks reports (a prefork child as it starts): none means the
        # worker could not keep its census, never that it is clean.
        return NodeResult(
            name, NodeStatus.FAILED, Verdict.ERROR,
            "answered, but no worker process reported a census (see the worker's log)",
        )  # fmt: skip
    processes = tuple(
        judge_process(name, p, sessions, server_available, received_at)
        for p in sorted(reply["processes"], key=lambda p: (not p.get("main"), p["pid"]))
    )
    verdict = worst([p.verdict for p in processes])
    return NodeResult(
        node=name,
        status=NodeStatus.ANSWERED,
        verdict=verdict,
        summary=node_summary(processes, verdict),
        pid=reply.get("pid"),
        pool=reply.get("pool"),
        concurrency=reply.get("concurrency"),
        alias=reply.get("alias"),
        tracking=reply.get("tracking"),
        pooldoctor=reply.get("pooldoctor"),
        processes=processes,
    )


def judge_process(
    node: str,
    data: Mapping[str, Any],
    sessions: Mapping[int, ServerSession],
    server_available: bool,
    received_at: float,
) -> ProcessResult:
    pool = PoolStats(**data["pool"]) if data.get("pool") else None
    tasks, lost, held = int(data.get("tasks", 0)), int(data["lost"]), int(data["held"])
    updated = data.get("updated")
    since = max(0.0, received_at - float(updated)) if updated is not None else 0.0
    pinned = tuple(
        PinnedConnection(
            thread=c["thread"],
            thread_role=c["thread_role"],
            held_seconds=round(float(c.get("held_seconds", 0.0)) + since, 1),
            transaction=c.get("transaction", "unknown"),
            backend_pid=c.get("backend_pid"),
        )
        for c in data.get("connections", ())
        if c.get("held")
    )
    backends = tuple(sorted({int(c["backend_pid"]) for c in data.get("connections", ())
                             if c.get("backend_pid") is not None}))  # fmt: skip
    remaining = runs_dry_after(pool, tasks, lost, held)
    if lost > 0:
        verdict = Verdict.LEAK
        summary = f"lost {_plural(lost, 'pool slot' if pool else 'server connection')} in " + (
            f"{_plural(tasks, 'task')}"
        )
        if pool is not None and pool.max_size - lost - held <= 0:
            summary += "; no pool slot is left: every task that needs a connection times out"
        elif remaining is not None:
            summary += f"; the pool runs dry after {_plural(remaining, 'more task')}"
    elif held > 0:
        verdict = Verdict.PINNED
        holders = sorted({f"{c.thread} ({c.thread_role})" for c in pinned})
        oldest = max((c.held_seconds for c in pinned), default=0.0)
        stays = "stays" if held == 1 else "stay"
        summary = (
            f"{_plural(held, 'connection')} {stays} checked out between tasks, held by "
            f"{', '.join(holders) or 'live threads'}" + (f" for {oldest:g} s" if pinned else "")
        )
    else:
        verdict = Verdict.CLEAN
        summary = f"nothing held between tasks, nothing lost ({_plural(tasks, 'task')})"
    return ProcessResult(
        pid=int(data["pid"]),
        verdict=verdict,
        summary=summary,
        tasks=tasks,
        failed_tasks=int(data.get("failed_tasks", 0)),
        lost_slots=lost,
        held_connections=held,
        connections_opened=int(data.get("opened", 0)),
        adopted_connections=int(data.get("inherited", 0)),
        checkouts=int(data.get("checkouts", 0)),
        returns=int(data.get("returns", 0)),
        pool=pool,
        tasks_until_exhaustion=remaining,
        leak_sites=tuple(leak_site_from_dict(s) for s in data.get("leak_sites", ())),
        node=node,
        main=bool(data.get("main")),
        pinned=pinned,
        backend_pids=backends,
        server_sessions=tuple(sessions[b] for b in backends if b in sessions),
        gone_from_server=tuple(b for b in backends if b not in sessions)
        if server_available
        else (),
        updated_seconds_ago=round(since, 1) if updated is not None else None,
        timeline=from_dict(Timeline, data["timeline"]) if data.get("timeline") else None,
    )


def runs_dry_after(pool: PoolStats | None, tasks: int, lost: int, held: int) -> int | None:
    """More tasks until no pool slot is left, at the rate slots were lost so far."""
    if pool is None or lost <= 0 or tasks <= 0:
        return None
    free = pool.max_size - lost - held
    return max(0, math.floor(free / (lost / tasks)))


def group_sessions(sessions: Sequence[ServerSession]) -> tuple[SessionGroup, ...]:
    groups: dict[tuple[str, str | None, str | None], list[int]] = defaultdict(list)
    for s in sessions:
        groups[(s.application_name, s.client_addr, s.state)].append(s.pid)
    return tuple(
        SessionGroup(application_name=a, client_addr=c, state=st, count=len(p), pids=tuple(p))
        for (a, c, st), p in sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]])
    )


def node_summary(processes: Sequence[ProcessResult], verdict: Verdict) -> str:
    if not processes:
        return "answered, with no worker process yet"
    if verdict is Verdict.CLEAN:
        return f"{_plural(len(processes), 'process')}: nothing held, nothing lost"
    bad = [p for p in processes if p.verdict is verdict]
    return "; ".join(f"pid {p.pid}: {p.summary}" for p in bad)


def headline(nodes: Sequence[NodeResult], broker: str, timeout: float,
             problems: Sequence[str]) -> str:  # fmt: skip
    if not nodes:
        why = f" ({problems[0]})" if problems else ""
        return f"ERROR: no worker answered within {timeout:g} s on {broker}{why}."
    verdict = worst([n.verdict for n in nodes])
    processes = sum(len(n.processes) for n in nodes)
    if verdict is Verdict.CLEAN:
        return (f"Clean: {_plural(len(nodes), 'worker')}, {_plural(processes, 'process')}: "
                "nothing held, nothing lost.")  # fmt: skip
    bad = [n for n in nodes if n.verdict is verdict]
    others = f" (and {_plural(len(bad) - 1, 'more worker')})" if len(bad) > 1 else ""
    return f"{verdict.value.upper()}: {bad[0].node}: {bad[0].summary}{others}."


def findings(nodes: Sequence[NodeResult], server: ServerResult, destination: bool,
             timeout: float, problems: Sequence[str]) -> list[Finding]:  # fmt: skip
    out: list[Finding] = []
    for node in nodes:
        if node.status is NodeStatus.NOT_INSTALLED:
            out.append(Finding(
                "PD507", Severity.WARNING,
                f"{node.node}: {node.summary}; the broker and the server still see it, its "
                "processes' pools cannot be inspected",
                "add pooldoctor.celery.install(app) to the project's Celery module and restart "
                "the worker",
                node.node,
            ))  # fmt: skip
        elif node.status in (NodeStatus.NO_ANSWER, NodeStatus.FAILED):
            out.append(Finding(
                "PD508", Severity.ERROR, f"{node.node}: {node.summary}",
                "check the node name (celery -A ... inspect ping lists the live ones), raise "
                "--timeout, or look at the worker: a control thread that does not answer is "
                "blocked",
                node.node,
            ))  # fmt: skip
        for p in node.processes:
            out.extend(process_findings(p))
    if not nodes:
        out.append(Finding(
            "PD509", Severity.ERROR,
            f"no worker answered within {timeout:g} s"
            + (f" ({'; '.join(problems)})" if problems else ""),
            "start the workers on the same broker (same broker_url), or raise --timeout",
        ))  # fmt: skip
    if not server.available:
        out.append(Finding(
            "PD510", Severity.INFO,
            f"the server's view is missing: {server.detail}",
            "pass --settings (or set DJANGO_SETTINGS_MODULE) and make the database reachable "
            "from here to match connections to server sessions",
        ))  # fmt: skip
    stuck = [g for g in server.unmatched if g.state and g.state.startswith("idle in transaction")]
    if stuck:
        count = sum(g.count for g in stuck)
        names = ", ".join(sorted({g.application_name or "(no application_name)" for g in stuck}))
        out.append(Finding(
            "PD511", Severity.WARNING,
            f"{_plural(count, 'session')} idle in transaction that no inspected worker process "
            f"holds ({names}): each keeps a server connection and its locks",
            "find the client by application_name and client_addr; set "
            "idle_in_transaction_session_timeout on the server",
        ))  # fmt: skip
    return out


def process_findings(p: ProcessResult) -> list[Finding]:
    where = f"{p.node} pid {p.pid}"
    out: list[Finding] = []
    if p.lost_slots:
        site = next((s for s in p.leak_sites if s.file), None)
        at = f", checked out at {site.file}:{site.line} in {site.function}()" if site else ""
        out.append(Finding(
            "PD501", Severity.ERROR,
            f"{where}: {p.summary}{at}",
            "close the connection on the thread that ran the ORM calls before that thread ends "
            "(for example async_to_sync plus close_old_connections() in the task's wrapper); "
            "pooldoctor check --wrapper measures which of your patterns is clean",
            p.node,
        ))  # fmt: skip
    if p.held_connections:
        out.append(Finding(
            "PD502", Severity.WARNING,
            f"{where}: {p.summary}",
            "call close_old_connections() on the thread that ran the ORM code when the task "
            "ends, or let that thread end with the task",
            p.node,
        ))  # fmt: skip
    poisoned = [c for c in p.pinned if c.transaction in IN_TRANSACTION]
    if poisoned:
        out.append(Finding(
            "PD503", Severity.ERROR,
            f"{where}: {_plural(len(poisoned), 'held connection')} idle in transaction between "
            f"tasks (oldest {max(c.held_seconds for c in poisoned):g} s): later tasks on that "
            "thread run inside a stale transaction",
            "end every transaction in the task (atomic blocks, no bare BEGIN), and close the "
            "connection on its thread when the task ends",
            p.node,
        ))  # fmt: skip
    dry = p.pool is not None and p.pool.max_size - p.lost_slots - p.held_connections <= 0
    if p.pool is not None and (p.pool.waiting > 0 or dry):
        out.append(Finding(
            "PD504", Severity.ERROR,
            f"{where}: the pool is dry: max_size {p.pool.max_size}, {p.lost_slots} lost, "
            f"{p.held_connections} "
            f"held, {p.pool.waiting} waiting",
            "restart the worker to get its slots back now; fix the leak (PD501/PD502) so they "
            "stay back",
            p.node,
        ))  # fmt: skip
    # Without a pool a connect per task is the design (CONN_MAX_AGE=0); with one, churn.
    if p.pool is not None and p.tasks >= 2 and p.connections_opened / p.tasks > CHURN_PER_TASK:
        out.append(Finding(
            "PD505", Severity.WARNING,
            f"{where}: {p.connections_opened} server connections opened in "
            f"{_plural(p.tasks, 'task')} ({p.connections_opened / p.tasks:.2g} per task): the pool "
            "is rebuilt instead of reused",
            "keep connections across tasks (a pool, or CONN_MAX_AGE on threads that live as "
            "long as the process), or put PgBouncer in front of the server",
            p.node,
        ))  # fmt: skip
    if p.adopted_connections:
        out.append(Finding(
            "PD506", Severity.WARNING,
            f"{where}: {_plural(p.adopted_connections, 'connection')} inherited from the parent "
            "process's pool: their sockets are shared with every sibling",
            "discard the inherited pool in worker_process_init (connections[alias]"
            ".close_pool()), and do not touch the database in the parent before it forks",
            p.node,
        ))  # fmt: skip
    return out


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith("ss") else f"{n} {word}s"
