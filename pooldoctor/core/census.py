"""What is measured after each task: pool accounting, per-thread connections, the server's view.

Runs inside a subject process, after Django is set up.

Lost pool slots are the hard part. psycopg_pool keeps no reference to a connection it has handed out
and says nothing when one is garbage-collected (``Connection.__del__`` returns early for pooled
connections), so the pool keeps counting the slot as in use forever. The :class:`Ledger` learns of
every connection Django opens through the ``connection_created`` signal and attaches a
``weakref.finalize`` that keeps only the connection's ``pgconn``. When the connection object dies,
the finalizer looks at the ``pgconn``: still open means nobody closed or returned it (a pool closes
the connections it discards, and keeps the idle ones alive), so the slot, or the server connection,
is lost. This is the moment of loss, not a poll.

The census then forces ``gc.collect()``: a dead thread's ``DatabaseWrapper`` sits in reference
cycles and would otherwise die whenever the collector next runs, so without it the server's view
would depend on the collector's timing. Connections still alive but owned by a dead thread are
counted as lost too, so the numbers are the same before and after a collection.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import gc
import os
import threading
import time
import weakref
from typing import Any

from pooldoctor.core.forensics.sites import Cause, Checkout, Loss, leak_sites
from pooldoctor.core.forensics.stacks import capture
from pooldoctor.core.forensics.threads import ThreadLife, ThreadRegistry
from pooldoctor.core.model import (
    LeakSite,
    PoolStats,
    ServerView,
    SpanEnd,
    ThreadConnection,
    Timeline,
    from_dict,
)
from pooldoctor.core.readonly import DIRECT_SUFFIX

_DIGITS = 4
"""Timeline moments to 0.1 ms: enough to draw, and shorter to write after every task."""
_TRANSACTION = {0: "idle", 1: "active", 2: "intrans", 3: "inerror", 4: "unknown"}
_CONNECTION_OK = 0


# The task (or test) running now, for the checkouts it makes: a context variable follows the task
# into the executor threads asgiref runs its ORM calls on; the ledger's own field covers threads
# started without the task's context.
CURRENT_TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pooldoctor_task", default=None
)


@dataclasses.dataclass
class _Tracked:
    """One psycopg connection object and its latest checkout."""

    ref: weakref.ref[Any]
    wrapper: weakref.ref[Any]
    thread: weakref.ref[threading.Thread]
    checkout: Checkout
    opened_in_pid: int
    number: int = 0


class Ledger:
    """Every connection Django opened for one alias, every checkout and return, and the
    connections that died checked out.

    With ``tracking`` each checkout's call stack is captured, so lost and pinned connections can
    be traced to the project's line (:meth:`leak_sites`); without it only the counts are kept.
    """

    def __init__(
        self,
        alias: str,
        *,
        tracking: bool = True,
        unit: str = "task",
        max_task_ends: int | None = None,
        history: int = 5000,
    ) -> None:
        self.alias = alias
        self.max_task_ends = max_task_ends
        """How many task end times to keep (the latest): a production worker runs for months."""
        self.tracking = tracking
        self.unit = unit
        """What the labels name: a task, or a test under the pytest plugin."""
        self._lost_dead = 0
        self._closed_dead = 0
        """Connection objects that died closed (without a pool: closed, i.e. given back)."""
        self.opened = 0
        """Connection objects first seen in this process: new server sessions (churn)."""
        self.checkouts = 0
        self.returns = 0
        self.task: str | None = None
        self.task_ends: dict[str, float] = {}
        # The timeline: the latest ``history`` checkouts and tasks, from second 0 of this ledger.
        self._origin = (time.time(), time.monotonic())
        self._history: collections.deque[Checkout] = collections.deque(maxlen=history)
        self._dropped = 0
        self._task_spans: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()
        self._history_size = history
        self._numbered = 0
        self._losses: list[Loss] = []
        self._tracked: dict[int, _Tracked] = {}
        self._threads = ThreadRegistry()
        # Weak: Django closes and recreates pools (settings changes in tests), and a new pool may
        # reuse a dead one's id().
        self._hooked_pools: weakref.WeakSet[Any] = weakref.WeakSet()
        # A finalizer can run inside any allocation, on the thread that holds the lock: it only
        # queues the death here, and readers take the queue in under the (reentrant) lock.
        self._deaths: collections.deque[tuple[int, _Tracked | None, bool, float]] = (
            collections.deque()
        )
        self._lock = threading.RLock()

    def install(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(self._on_connection_created, weak=False)

    def uninstall(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.disconnect(self._on_connection_created)

    def task_started(self, label: str) -> contextvars.Token[str | None]:
        """Attribute the checkouts from here on to ``label``; returns the context token."""
        self.task = label
        with self._lock:
            self._task_spans[label] = [time.monotonic(), None, None]
            if len(self._task_spans) > self._history_size:
                self._task_spans.popitem(last=False)
        return CURRENT_TASK.set(label)

    def task_finished(
        self,
        label: str,
        token: contextvars.Token[str | None] | None = None,
        *,
        ok: bool | None = None,
    ) -> None:
        self.task_ends[label] = now = time.monotonic()
        if self.max_task_ends is not None and len(self.task_ends) > self.max_task_ends:
            del self.task_ends[next(iter(self.task_ends))]  # the oldest: dicts keep order
        with self._lock:
            span = self._task_spans.get(label)
            if span is not None:
                span[1], span[2] = now, ok
        if token is not None:
            CURRENT_TASK.reset(token)

    def _on_connection_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        # Django sends this after every connect(): with a pool, after every checkout.
        if connection.alias != self.alias or connection.connection is None:
            return
        raw = connection.connection
        captured = capture(skip=2) if self.tracking else None
        thread = threading.current_thread()
        checkout = Checkout(
            stack=captured.stack if captured else (),
            thread=self._threads.current(captured),
            task=CURRENT_TASK.get() or self.task,
            at=time.monotonic(),
        )
        pool = getattr(raw, "_pool", None)
        with self._lock:
            self.checkouts += 1
            previous = self._tracked.get(id(raw))
            known = previous is not None and previous.ref() is raw
            if previous is not None and known:
                number, opened_in = previous.number, previous.opened_in_pid
            else:
                number, opened_in = self._next_number(), os.getpid()
            checkout.connection, checkout.inherited = number, opened_in != os.getpid()
            self._tracked[id(raw)] = _Tracked(
                ref=weakref.ref(raw),
                wrapper=weakref.ref(connection),
                thread=weakref.ref(thread),
                checkout=checkout,
                opened_in_pid=opened_in,
                number=number,
            )
            if len(self._history) == self._history_size:
                self._dropped += 1
            self._history.append(checkout)
            if not known:
                self.opened += 1
            if pool is not None and pool not in self._hooked_pools:
                self._hooked_pools.add(pool)
                self._hook_returns(pool)
        if not known:
            # The finalizer holds the pgconn, not the connection: the connection can still die,
            # and the pgconn is released (socket closed) right after the callback, as without us.
            weakref.finalize(raw, self._on_death, id(raw), raw.pgconn)
            if pool is None:
                self._hook_close(raw)

    def _hook_returns(self, pool: Any) -> None:
        """Record every return to ``pool``: psycopg_pool has no hook for it, so wrap putconn on
        this one pool object (Django returns connections through ``connection._pool.putconn``)."""
        putconn = pool.putconn

        def recording_putconn(conn: Any) -> None:
            with self._lock:
                entry = self._tracked.get(id(conn))
                if entry is not None and entry.ref() is conn and entry.checkout.returned is None:
                    entry.checkout.returned = time.monotonic()
                    self.returns += 1
            putconn(conn)

        pool.putconn = recording_putconn

    def _hook_close(self, raw: Any) -> None:
        """Without a pool, closing is giving back: note when (for the timeline) on this one
        connection object, then close it as asked."""
        close = raw.close
        key = id(raw)

        def recording_close() -> None:
            with self._lock:
                entry = self._tracked.get(key)
                if entry is not None and entry.checkout.returned is None and not raw.closed:
                    entry.checkout.returned = time.monotonic()
            close()

        raw.close = recording_close

    def adopt_inherited(self, pool: Any) -> int:
        """In a forked child: the idle connections the pool brought from the parent. They were
        opened (maybe by the pool's own threads) before the fork, in the parent."""
        parent = os.getppid()
        adopted = 0
        for raw in list(getattr(pool, "_pool", ())):
            with self._lock:
                if id(raw) not in self._tracked:
                    self._tracked[id(raw)] = _Tracked(
                        ref=weakref.ref(raw),
                        wrapper=weakref.ref(raw),  # no Django wrapper holds it yet
                        thread=weakref.ref(threading.current_thread()),
                        checkout=Checkout(
                            stack=(),
                            thread=ThreadLife("(parent process)", "inherited from the parent"),
                            task=None,
                            at=time.monotonic(),
                        ),
                        opened_in_pid=parent,
                        number=self._next_number(),
                    )
                    adopted += 1
                else:
                    self._tracked[id(raw)].opened_in_pid = parent
        return adopted

    def _next_number(self) -> int:
        self._numbered += 1
        return self._numbered

    def _on_death(self, key: int, pgconn: Any) -> None:
        # Called by the garbage collector: no lock (it may be held by this very thread).
        died = time.monotonic()
        self._deaths.append((key, self._tracked.get(key), pgconn.status == _CONNECTION_OK, died))

    def _drain(self) -> None:
        """Take the queued deaths in; call with the lock held."""
        while self._deaths:
            key, entry, still_open, died = self._deaths.popleft()
            if entry is not None and self._tracked.get(key) is entry:
                del self._tracked[key]
            if still_open:
                self._lost_dead += 1
                if entry is not None:
                    entry.checkout.died = died
                    self._losses.append(Loss(entry.checkout, Cause.COLLECTED))
            else:
                self._closed_dead += 1

    @property
    def lost_dead(self) -> int:
        """Connections that died while checked out (or open, without a pool)."""
        with self._lock:
            self._drain()
            return self._lost_dead

    def snapshot(self, pool: Any) -> tuple[list[ThreadConnection], int, int]:
        """The live connections, how many are lost so far, and how many are held."""
        rows, _ = self._live(pool)
        lost_live = sum(1 for row in rows if row.checked_out and not row.held)
        held = sum(1 for row in rows if row.held)
        rows.sort(key=lambda r: (not r.checked_out, r.thread, r.backend_pid or 0))
        return rows, self.lost_dead + lost_live, held

    def _live(
        self, pool: Any, ignore_held_by: threading.Thread | None = None
    ) -> tuple[list[ThreadConnection], list[Loss]]:
        """A row per live connection, and a loss per live connection that is lost or held (but
        not held by ``ignore_held_by``)."""
        now = time.monotonic()
        rows: list[ThreadConnection] = []
        losses: list[Loss] = []
        with self._lock:
            self._drain()
            entries = list(self._tracked.values())
        for entry in entries:
            raw = entry.ref()
            if raw is None:
                continue
            row = _describe(raw, entry, pool, now)
            rows.append(row)
            if row.held:
                if ignore_held_by is not None and entry.thread() is ignore_held_by:
                    continue
                detail = f"checked out {row.held_seconds:g} s ago, transaction {row.transaction}"
                losses.append(Loss(entry.checkout, Cause.HELD, detail))
            elif row.checked_out:
                cause = Cause.DROPPED if row.thread_alive else Cause.ORPHANED
                losses.append(Loss(entry.checkout, cause))
        return rows, losses

    def leak_sites(
        self,
        pool: Any,
        cwd: str,
        task: str | None = None,
        *,
        ignore_held_by: threading.Thread | None = None,
        stand_ins: bool = False,
    ) -> tuple[LeakSite, ...]:
        """Where every connection lost so far, or held right now, was checked out (only those
        checked out by ``task``, when given). ``ignore_held_by`` leaves out the connections that
        thread holds: a test's own transaction on the thread running the test is not a leak. (A
        role would not do: a thread's role is set by its first checkout, so the main thread is
        "thread blocked in async_to_sync" when that one came through ``async_to_sync``.)
        ``stand_ins``: pooldoctor's probe task may be the site (a built-in mode's run)."""
        _, live = self._live(pool, ignore_held_by)
        with self._lock:
            self._drain()
            dead = list(self._losses)
        losses = [loss for loss in dead + live if task is None or loss.checkout.task == task]
        return leak_sites(losses, self.task_ends, cwd, self.unit, stand_ins=stand_ins)

    def timeline(self, pool: Any, *, latest: int | None = None) -> Timeline:
        """Every checkout kept (the ``latest`` few, when given) and the tasks around them, in
        seconds since this ledger started: how each checkout ended is what the census decides
        (returned, lost, held), and a lost one ends when its thread did."""
        return from_dict(Timeline, self.timeline_record(pool, latest=latest))

    def timeline_record(self, pool: Any, *, latest: int | None = None) -> dict[str, Any]:
        """:meth:`timeline` as the JSON it is sent as, built directly: a worker rewrites it
        after every task, and the dataclasses would cost it three times as much."""
        _, live = self._live(pool)
        with self._lock:
            self._drain()
            outcome = {id(loss.checkout): loss.cause for loss in [*self._losses, *live]}
            checkouts = list(self._history)
            tasks = [(label, *span) for label, span in self._task_spans.items()]
            dropped = self._dropped
        if latest is not None and len(checkouts) > latest:
            dropped += len(checkouts) - latest
            checkouts = checkouts[-latest:]
            first = checkouts[0].at if checkouts else 0.0
            tasks = [t for t in tasks if t[2] is None or t[2] >= first]
        wall, zero = self._origin

        def at(moment: float | None) -> float | None:
            return None if moment is None else round(moment - zero, _DIGITS)

        spans = []
        for c in checkouts:
            cause = outcome.get(id(c))
            spans.append(
                {
                    "connection": c.connection,
                    "thread": c.thread.name,
                    "thread_role": c.thread.role,
                    "task": c.task,
                    "checked_out": round(c.at - zero, _DIGITS),
                    "ended": at(_span_end(c, cause)),
                    "end": _span_kind(c, cause, pool).value,
                    "thread_ended": at(c.thread.ended),
                    "inherited": c.inherited,
                }
            )
        return {
            "origin": round(wall, _DIGITS),
            "duration": round(time.monotonic() - zero, _DIGITS),
            "spans": spans,
            "tasks": [
                {"label": label, "started": at(start), "ended": at(end), "ok": ok}
                for label, start, end, ok in tasks
            ],
            "dropped_spans": dropped,
        }

    def returned(self, pool: Any) -> int:
        """Checkouts given back: returns to the pool, or, without one, connections closed."""
        if pool is not None:
            return self.returns
        rows, _ = self._live(pool)  # (takes the queued deaths in)
        return self._closed_dead + sum(1 for row in rows if not row.open)

    def broken(self) -> int:
        """Live connections the server or the network ended (psycopg's ``broken``: closed, and
        not by anyone in this process), as when libpq lost one without a SQLSTATE."""
        with self._lock:
            entries = list(self._tracked.values())
        return sum(1 for entry in entries if getattr(entry.ref(), "broken", False))

    def close_all(self) -> None:
        """Close every connection still alive (at the end of a subject process)."""
        with self._lock:
            entries = list(self._tracked.values())
        for entry in entries:
            raw = entry.ref()
            if raw is not None and not raw.closed:
                raw.close()


def _describe(raw: Any, entry: _Tracked, pool: Any, now: float) -> ThreadConnection:
    thread = entry.thread()
    alive = thread is not None and thread.is_alive()
    is_open = not raw.closed
    # A pooled connection carries `_pool` only while it is handed out (psycopg_pool clears it when
    # the connection goes back); without a pool, "checked out" means open.
    checked_out = (getattr(raw, "_pool", None) is pool) if pool is not None else is_open
    wrapper = entry.wrapper()
    owned = wrapper is not None and getattr(wrapper, "connection", None) is raw
    pgconn = raw.pgconn
    autocommit = wrapper.autocommit if owned and wrapper is not None else None
    return ThreadConnection(
        thread=entry.checkout.thread.name,
        thread_role=entry.checkout.thread.role,
        thread_alive=alive,
        open=is_open,
        checked_out=checked_out,
        held=checked_out and alive and owned,
        transaction=_TRANSACTION.get(pgconn.transaction_status, "unknown"),
        autocommit=autocommit,
        held_seconds=round(now - entry.checkout.at, 3) if checked_out else 0.0,
        backend_pid=pgconn.backend_pid if is_open else None,
        opened_in_pid=entry.opened_in_pid,
    )


def _span_kind(checkout: Checkout, cause: Cause | None, pool: Any) -> SpanEnd:
    if checkout.returned is not None:
        return SpanEnd.RETURNED
    if cause is Cause.HELD:
        return SpanEnd.HELD if pool is not None else SpanEnd.OPEN
    if cause is not None:
        return SpanEnd.LOST
    return SpanEnd.OPEN


def _span_end(checkout: Checkout, cause: Cause | None) -> float | None:
    """When the checkout ended: its return, or for a lost one the moment nothing could return
    it any more (its thread ended, or the connection object died)."""
    if checkout.returned is not None:
        return checkout.returned
    if cause is None or cause is Cause.HELD:
        return None
    moments = [m for m in (checkout.thread.ended, checkout.died) if m is not None]
    return min(moments) if moments else None


def django_pool(alias: str) -> Any:
    """The psycopg pool Django keeps for ``alias`` in this process, or None (no pool yet, or no
    pooling). Never opens a connection."""
    from django.db import connections

    return getattr(type(connections[alias]), "_connection_pools", {}).get(alias)


def pool_stats(pool: Any) -> PoolStats | None:
    if pool is None or pool.closed:
        return None
    stats = pool.get_stats()
    return PoolStats(
        min_size=stats["pool_min"],
        max_size=stats["pool_max"],
        size=stats["pool_size"],
        available=stats["pool_available"],
        waiting=stats.get("requests_waiting", 0),
        connections_opened=stats.get("connections_num", 0),
        timeout=float(pool.timeout),
    )


def collect_garbage() -> None:
    """Finalize what dead threads left in reference cycles, so the census does not depend on
    when the collector last ran."""
    gc.collect()


class ServerObserver:
    """One plain connection (never from the pool) that reads pg_stat_activity: the subject's
    sessions, and those the project opened outside Django (tagged ``<name>:direct`` by libpq's
    PGAPPNAME, see :mod:`pooldoctor.core.readonly`)."""

    QUERY = (
        "SELECT pid, state, application_name = %s FROM pg_stat_activity "
        "WHERE application_name IN (%s, %s) AND pid <> pg_backend_pid() ORDER BY pid"
    )

    def __init__(self, conninfo: dict[str, Any], application_name: str) -> None:
        import psycopg

        params = {k: v for k, v in conninfo.items() if k not in {"pool", "cursor_factory"}}
        params["application_name"] = f"{application_name}:observer"[:63]
        self._conn = psycopg.connect(autocommit=True, **params)
        self._name = application_name
        self._direct = f"{application_name}{DIRECT_SUFFIX}"[:63]

    def view(self) -> ServerView:
        rows = self._conn.execute(self.QUERY, (self._direct, self._name, self._direct)).fetchall()
        own = [(pid, state) for pid, state, direct in rows if not direct]
        return ServerView(
            backends=len(own),
            idle_in_transaction=sum(1 for _, state in own if state == "idle in transaction"),
            pids=tuple(pid for pid, _ in own),
            direct=len(rows) - len(own),
        )

    def close(self) -> None:
        self._conn.close()
