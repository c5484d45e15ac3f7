"""Crossed replies, measured on the connection the task itself uses.

Two processes writing to one socket (a connection, or a pool, inherited across a fork) do not
fail: each reads whatever reply comes next, often the other one's. The only way to see it is to
ask a question whose answer is known. Before the first query a task sends on a connection, the
echo sends the task's id through that same connection (``SELECT %s::text, pg_backend_pid()``) and
keeps what came back and which server process answered: a reply that is not the task's id is a
crossed reply. It rides on the task's own connection — the probe's, a wrapper's, or the project's
own task's — through a Django execute wrapper set on every connection as it is created, so no
separate probe query is needed and the project's code runs unchanged.

The task is known through a context variable set by the worker before it runs the task; asgiref
copies context variables into ``sync_to_async`` threads, so an async task's ORM calls on an
executor thread are echoed too. The echo reads, never writes.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pooldoctor_echo_task", default=None
)
_SENT: set[str] = set()
_ECHOES: dict[str, tuple[str, int]] = {}
_LOCK = threading.Lock()


def install(alias: str) -> None:
    """Echo on every connection of ``alias`` this process creates (call before the project's
    first query, so that a connection opened before a fork carries it into the children)."""
    from django.db.backends.signals import connection_created

    def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias == alias and _echo_first not in connection.execute_wrappers:
            connection.execute_wrappers.append(_echo_first)

    connection_created.connect(on_created, weak=False)


def take(task_id: str) -> tuple[str, int] | None:
    """The echo of ``task_id`` (what came back, the server pid that answered), once."""
    with _LOCK:
        _SENT.discard(task_id)
        return _ECHOES.pop(task_id, None)


def _echo_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    task = CURRENT.get()
    if task is not None:
        with _LOCK:
            first = task not in _SENT
            _SENT.add(task)
        if first:
            reply = _echo(context["connection"].connection, task)
            if reply is not None:
                with _LOCK:
                    _ECHOES[task] = reply
    return execute(sql, params, many, context)


def _echo(raw: Any, task: str) -> tuple[str, int] | None:
    """Send the task's id through the raw connection and read it back. A desynchronised socket
    may fail instead of answering: the task's own query meets the same failure, and it is
    recorded there."""
    try:
        with raw.cursor() as cursor:
            cursor.execute("SELECT %s::text, pg_backend_pid()", [task])
            row = cursor.fetchone()
    except Exception:
        return None
    return (str(row[0]), int(row[1])) if row else None
