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

import dataclasses
import gc
import os
import threading
import time
import weakref
from typing import Any

from pooldoctor.model import PoolStats, ServerView, ThreadConnection

_TRANSACTION = {0: "idle", 1: "active", 2: "intrans", 3: "inerror", 4: "unknown"}
_CONNECTION_OK = 0


@dataclasses.dataclass
class _Tracked:
    """One psycopg connection object and its latest checkout."""

    ref: weakref.ref[Any]
    wrapper: weakref.ref[Any]
    thread: weakref.ref[threading.Thread]
    thread_name: str
    thread_role: str
    since: float
    opened_in_pid: int


class Ledger:
    """Every connection Django opened for one alias, and the ones that died open."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.lost_dead = 0
        self.opened = 0
        """Connection objects first seen in this process: new server sessions (churn)."""
        self._tracked: dict[int, _Tracked] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(self._on_connection_created, weak=False)

    def _on_connection_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias != self.alias or connection.connection is None:
            return
        raw = connection.connection
        thread = threading.current_thread()
        with self._lock:
            previous = self._tracked.get(id(raw))
            known = previous is not None and previous.ref() is raw
            self._tracked[id(raw)] = _Tracked(
                ref=weakref.ref(raw),
                wrapper=weakref.ref(connection),
                thread=weakref.ref(thread),
                thread_name=thread.name,
                thread_role=thread_role(thread),
                since=time.monotonic(),
                opened_in_pid=previous.opened_in_pid if previous and known else os.getpid(),
            )
            if not known:
                self.opened += 1
        if not known:
            # The finalizer holds the pgconn, not the connection: the connection can still die,
            # and the pgconn is released (socket closed) right after the callback, as without us.
            weakref.finalize(raw, self._on_death, id(raw), raw.pgconn)

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
                        thread_name="(parent process)",
                        thread_role="inherited from the parent",
                        since=time.monotonic(),
                        opened_in_pid=parent,
                    )
                    adopted += 1
                else:
                    self._tracked[id(raw)].opened_in_pid = parent
        return adopted

    def _on_death(self, key: int, pgconn: Any) -> None:
        with self._lock:
            self._tracked.pop(key, None)
            if pgconn.status == _CONNECTION_OK:
                self.lost_dead += 1

    def snapshot(self, pool: Any) -> tuple[list[ThreadConnection], int, int]:
        """The live connections, how many are lost so far, and how many are held."""
        now = time.monotonic()
        rows: list[ThreadConnection] = []
        lost_live = held = 0
        with self._lock:
            entries = list(self._tracked.values())
        for entry in entries:
            raw = entry.ref()
            if raw is None:
                continue
            row = _describe(raw, entry, pool, now)
            rows.append(row)
            if row.held:
                held += 1
            elif row.checked_out:
                lost_live += 1
        rows.sort(key=lambda r: (not r.checked_out, r.thread, r.backend_pid or 0))
        return rows, self.lost_dead + lost_live, held

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
        thread=entry.thread_name,
        thread_role=entry.thread_role,
        thread_alive=alive,
        open=is_open,
        checked_out=checked_out,
        held=checked_out and alive and owned,
        transaction=_TRANSACTION.get(pgconn.transaction_status, "unknown"),
        autocommit=autocommit,
        held_seconds=round(now - entry.since, 3) if checked_out else 0.0,
        backend_pid=pgconn.backend_pid if is_open else None,
        opened_in_pid=entry.opened_in_pid,
    )


def thread_role(thread: threading.Thread) -> str:
    """What kind of thread this is, in the words of asgiref and asyncio."""
    if thread is threading.main_thread():
        return "main thread"
    from asgiref.sync import SyncToAsync

    executor = SyncToAsync.single_thread_executor
    if thread in getattr(executor, "_threads", ()):
        return "process-wide sync_to_async executor"
    if thread.name.startswith("asyncio_"):
        return "asyncio default executor"
    if thread.name.startswith("ThreadPoolExecutor-"):
        return "executor thread"
    return "thread"


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
    """One plain connection (never from the pool) that reads pg_stat_activity."""

    QUERY = (
        "SELECT pid, state FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY pid"
    )

    def __init__(self, conninfo: dict[str, Any], application_name: str) -> None:
        import psycopg

        params = {k: v for k, v in conninfo.items() if k not in {"pool", "cursor_factory"}}
        params["application_name"] = f"{application_name}:observer"[:63]
        self._conn = psycopg.connect(autocommit=True, **params)
        self._name = application_name

    def view(self) -> ServerView:
        rows = self._conn.execute(self.QUERY, (self._name,)).fetchall()
        return ServerView(
            backends=len(rows),
            idle_in_transaction=sum(1 for _, state in rows if state == "idle in transaction"),
            pids=tuple(pid for pid, _ in rows),
        )

    def close(self) -> None:
        self._conn.close()
