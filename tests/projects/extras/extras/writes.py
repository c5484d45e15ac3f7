"""Tasks that write, each another way past a guard that covers only the examined alias.

Each reads on the examined alias first, so that the task is measured, then writes (to the table
``pooldoctor_guard`` the tests create).
"""

import psycopg
from django.db import DatabaseError, connections, transaction


def _read() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def through_reporting() -> None:
    """Writes through a second alias on the same database."""
    _read()
    with connections["reporting"].cursor() as cursor:
        cursor.execute("INSERT INTO pooldoctor_guard (note) VALUES ('reporting')")


def lifted_in_atomic() -> None:
    """Turns its own transaction read-write, then updates."""
    _read()
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute("SET TRANSACTION READ WRITE")
        cursor.execute("INSERT INTO pooldoctor_guard (note) VALUES ('lifted')")


def lifted_for_the_session() -> None:
    """Turns the whole session read-write, then inserts outside any transaction."""
    _read()
    with connections["default"].cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        cursor.execute("INSERT INTO pooldoctor_guard (note) VALUES ('session')")


def swallowed() -> None:
    """Catches the refusal and carries on, as a task with a broad ``except`` does."""
    _read()
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("INSERT INTO pooldoctor_guard (note) VALUES ('swallowed')")
    except DatabaseError:
        pass


def to_sqlite() -> None:
    """Writes to an alias of another engine, which has no read-only session."""
    _read()
    with connections["local"].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS written (note text)")


def direct() -> None:
    """Opens its own psycopg connection, outside Django, with the alias's parameters and no
    ``options`` of its own, and writes through it."""
    _read()
    params = connections["reporting"].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold", "options"):
        params.pop(django_only, None)
    params.pop("application_name", None)
    with psycopg.connect(autocommit=True, **params) as conn:
        conn.execute("INSERT INTO pooldoctor_guard (note) VALUES ('direct')")


_KEPT: list[psycopg.Connection] = []


def direct_kept_read_write() -> None:
    """Keeps one connection of its own open, with ``options`` that make it read-write (libpq's
    defaults do not apply then), and only reads through it."""
    _read()
    if not _KEPT:
        params = connections["reporting"].get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold", "application_name"):
            params.pop(django_only, None)
        params["options"] = "-c default_transaction_read_only=off"
        _KEPT.append(psycopg.connect(autocommit=True, **params))
    _KEPT[0].execute("SELECT 1")
