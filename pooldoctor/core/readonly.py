"""Nothing written without ``--allow-writes``, on any alias the project uses.

Three layers, each for what the one before cannot see:

1. **Sessions start read-only.** Every PostgreSQL alias in ``DATABASES`` (the examined one and
   any other: a "reporting" alias on the same server is still the user's data) connects with
   ``-c default_transaction_read_only=on``, so the server itself refuses INSERT, UPDATE, DELETE,
   DDL and ``nextval()``. libpq reads ``PGOPTIONS`` for a connection opened without its own
   ``options``: a connection the project opens with psycopg itself starts read-only too, and
   ``PGAPPNAME`` tags it ``<run>:direct`` so that the census sees it in ``pg_stat_activity``.
2. **Statements that would lift it are refused before they reach the server.** A session may
   switch its own transaction back to read-write (``SET TRANSACTION READ WRITE`` right after
   ``BEGIN`` is allowed by PostgreSQL). An execute wrapper, set on every connection Django creates
   whatever the alias, refuses such statements with a database error the task sees (SQLSTATE
   25006, as the server's own refusal). On an alias of another engine, which has no read-only
   session, it refuses every statement that is not a read.
3. **Every refusal is recorded** (the server's and the wrapper's) with the task and the project's
   line that ran it, for the task's census and finding PD206.

No in-process guard can stop a connection the project opens itself with its own ``options``, or
one opened through another driver: README recommends a read-only role for production databases.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

from pooldoctor.core.model import DirectConnection, RefusedStatement

READ_ONLY = "-c default_transaction_read_only=on"
WRITABLE = "-c default_transaction_read_only=off"
READ_ONLY_SQLSTATE = "25006"
DIRECT_SUFFIX = ":direct"
"""The application_name suffix of a connection the project opened outside Django."""

# A statement that would turn a read-only session or transaction back into a read-write one.
_LIFTS = re.compile(
    r"""\b(?:
        set\s+(?:session\s+|local\s+)?transaction\b[^;]*\bread\s+write\b
      | (?:begin|start\s+transaction)\b[^;]*\bread\s+write\b
      | set\s+session\s+characteristics\b
      | (?:set|reset)\s+(?:session\s+|local\s+)?"?(?:default_)?transaction_read_only\b
      | reset\s+all\b
      | discard\s+all\b
      | set_config\s*\(\s*'(?:default_)?transaction_read_only'
      | alter\s+(?:role|user|database|system)\b[^;]*\b(?:default_)?transaction_read_only\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# On an engine with no read-only session: the statements that read (and the savepoints Django's
# atomic() issues around them).
_READS = re.compile(
    r"^\s*(?:select|with|explain|show|values|table|savepoint|release|rollback)\b", re.IGNORECASE
)
_WRITES_IN_WITH = re.compile(r"\b(?:insert|update|delete|merge)\b", re.IGNORECASE)
_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


class WriteRefused(Exception):
    """Raised (as a subclass of Django's DatabaseError, see :func:`_error_class`) for a statement
    the guard refuses."""


_RECORDED: list[RefusedStatement] = []
_DIRECT: list[DirectConnection] = []
# Frames of code that opens connections on Django's behalf (or pooldoctor's own): a connection
# opened under one of these is not the project's own.
_CONNECTS_FOR_DJANGO = ("django.db.", "psycopg_pool", "pooldoctor.")
_LOCK = threading.Lock()
_CWD = "."


def lifts_read_only(sql: str) -> bool:
    """Whether ``sql`` would switch a read-only session or transaction to read-write."""
    return bool(_LIFTS.search(_COMMENTS.sub(" ", sql)))


def is_read(sql: str) -> bool:
    """Whether ``sql`` only reads (for engines with no read-only session)."""
    text = _COMMENTS.sub(" ", sql)
    if not _READS.match(text):
        return False
    return not (text.lstrip()[:4].lower() == "with" and _WRITES_IN_WITH.search(text))


def make_read_only(
    databases: Mapping[str, dict[str, Any]],
    examined: str,
    application_name: str,
    *,
    examined_writable: bool,
    others_writable: bool,
) -> None:
    """Start every PostgreSQL alias's sessions read-only (the examined one too unless it may be
    written: the throwaway embedded server, or ``--allow-writes``), tag the other aliases'
    sessions, and make libpq's defaults read-only for connections the project opens itself."""
    for alias, entry in databases.items():
        writable = examined_writable if alias == examined else others_writable
        options = entry.setdefault("OPTIONS", {})
        if alias != examined and "postgresql" in str(entry.get("ENGINE", "")):
            options.setdefault("application_name", f"{application_name}:{alias}"[:63])
        if "postgresql" not in str(entry.get("ENGINE", "")):
            continue
        existing = str(options.get("options", "") or "")
        # Explicit either way: PGOPTIONS, set below, is libpq's default for a connection
        # without its own ``options``, and must not make a writable alias read-only.
        options["options"] = f"{existing} {WRITABLE if writable else READ_ONLY}".strip()
    if not others_writable:
        os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} {READ_ONLY}".strip()
        os.environ["PGAPPNAME"] = f"{application_name}{DIRECT_SUFFIX}"[:63]


def install(writable: frozenset[str], cwd: str) -> None:
    """Guard every connection Django creates from here on, whatever its alias, except the
    aliases in ``writable``."""
    global _CWD
    from django.db.backends.signals import connection_created

    _CWD = cwd

    def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias not in writable and _guard not in connection.execute_wrappers:
            # First in the list runs outermost: it sees the statement before any other wrapper.
            connection.execute_wrappers.insert(0, _guard)

    connection_created.connect(on_created, weak=False)
    _watch_direct_connections()


def take() -> tuple[tuple[RefusedStatement, ...], tuple[DirectConnection, ...]]:
    """The refusals and the direct connections recorded since the last call."""
    with _LOCK:
        taken = tuple(_RECORDED), tuple(_DIRECT)
        _RECORDED.clear()
        _DIRECT.clear()
    return taken


def _watch_direct_connections() -> None:
    """Record each connection the project opens with psycopg itself (code imported after this
    runs: the project's tasks and wrappers). psycopg has no hook for a new connection, so
    ``Connection.connect`` is wrapped, in this subject process only."""
    import psycopg

    connect = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]
    if getattr(connect, "pooldoctor_watched", False):
        return

    def watched(cls: Any, *args: Any, **kwargs: Any) -> Any:
        conn = connect(cls, *args, **kwargs)
        with contextlib.suppress(Exception):  # never fail the project's connect for our sake
            _record_direct(conn)
        return conn

    watched.pooldoctor_watched = True  # type: ignore[attr-defined]
    psycopg.Connection.connect = classmethod(watched)  # type: ignore[method-assign,assignment]
    # psycopg binds ``connect = Connection.connect`` at import: the module's name too.
    psycopg.connect = psycopg.Connection.connect


def _record_direct(conn: Any) -> None:
    from pooldoctor.core.forensics.stacks import capture, display_path, is_library, project_frame

    stack = capture(skip=3).stack
    # Innermost first: Django's backend or the pool before any project frame means a connection
    # made on Django's behalf (pooldoctor's own frames, outermost, run every task).
    for outer in reversed(stack):
        if not is_library(outer):
            break
        if outer.module.startswith(_CONNECTS_FOR_DJANGO):
            return
    frame = project_frame(stack)
    setting = conn.info.parameter_status("default_transaction_read_only")
    direct = DirectConnection(
        read_only=None if setting is None else str(setting) == "on",
        file=display_path(frame.file, _CWD, frame.module) if frame else None,
        line=frame.line if frame else None,
        function=frame.function if frame else None,
    )
    with _LOCK:
        _DIRECT.append(direct)


def _guard(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    connection = context["connection"]
    text = str(sql)
    postgres = connection.vendor == "postgresql"
    if lifts_read_only(text) or not (postgres or is_read(text)):
        _record(text, connection.alias, "pooldoctor")
        what = "would make the session read-write" if postgres else "writes"
        raise _error_class()(
            f"pooldoctor refused {_short(text)!r} on alias {connection.alias!r}: the statement "
            f"{what}, and this run is read-only (--database embedded or --allow-writes let the "
            "task write)"
        )
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        if sqlstate_of(exc) == READ_ONLY_SQLSTATE:
            _record(text, connection.alias, "server")
        raise


def _record(sql: str, alias: str, by: str) -> None:
    from pooldoctor.core.forensics.stacks import capture, display_path, project_frame

    frame = project_frame(capture(skip=3).stack)
    refusal = RefusedStatement(
        statement=_short(sql),
        alias=alias,
        by=by,
        file=display_path(frame.file, _CWD, frame.module) if frame else None,
        line=frame.line if frame else None,
        function=frame.function if frame else None,
    )
    with _LOCK:
        _RECORDED.append(refusal)


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."


def sqlstate_of(error: BaseException | None) -> str | None:
    """The SQLSTATE behind an exception: Django wraps psycopg's error, which carries it."""
    seen = 0
    while error is not None and seen < 10:
        state = getattr(error, "sqlstate", None)
        if state:
            return str(state)
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


_ERROR: type[Exception] | None = None


def _error_class() -> type[Exception]:
    """WriteRefused as a Django DatabaseError (the project's ``except DatabaseError`` sees it
    as the server's refusal), made once Django is importable."""
    global _ERROR
    if _ERROR is None:
        from django.db import DatabaseError

        class RefusedWrite(WriteRefused, DatabaseError):
            sqlstate = READ_ONLY_SQLSTATE

        RefusedWrite.__name__ = RefusedWrite.__qualname__ = "WriteRefused"
        _ERROR = RefusedWrite
    return _ERROR
