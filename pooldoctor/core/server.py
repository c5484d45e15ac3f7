"""The server's own view: ``pg_stat_activity`` of the project's database, read over one
read-only, bounded connection tagged ``pooldoctor:inspect``.

The connection is plain psycopg (no pool, not Django's): it opens, reads one query, and closes;
it never touches anyone else's session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pooldoctor.core import project
from pooldoctor.core.model import ServerSession

APPLICATION_NAME = "pooldoctor:inspect"
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 5000

QUERY = """
SELECT pid, coalesce(application_name, ''), host(client_addr), state,
       backend_start, state_change, xact_start
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
ORDER BY pid
"""


@dataclasses.dataclass(frozen=True)
class ServerRows:
    dsn: str
    sessions: tuple[ServerSession, ...]
    detail: str | None = None
    """Why there are no rows, when the server could not be read."""

    @property
    def available(self) -> bool:
        return self.detail is None


def unavailable(dsn: str, detail: str) -> ServerRows:
    return ServerRows(dsn=dsn, sessions=(), detail=detail)


def read(alias: str, timeout: float) -> ServerRows:
    """The project's database sessions (Django must be set up). Never raises for the server's
    sake: a server that cannot be read is a report line, the fleet's answers still count."""
    entry = project.database_settings(alias)
    dsn = project.describe_target(entry)
    params = connection_params(project.connection_params(alias), timeout)
    import psycopg

    try:
        with psycopg.connect(autocommit=True, **params) as conn:
            rows = conn.execute(QUERY).fetchall()
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        password = entry.get("PASSWORD")
        if password:
            text = text.replace(str(password), "***")
        return unavailable(dsn, f"cannot read pg_stat_activity: {text}")
    return ServerRows(dsn=dsn, sessions=tuple(session(row) for row in rows))


def connection_params(params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Django's connection parameters for the alias, made read-only, tagged and bounded."""
    result = dict(params)
    result["application_name"] = APPLICATION_NAME
    bounded = max(1, min(CONNECT_TIMEOUT, round(timeout)))
    result["connect_timeout"] = min(int(result.get("connect_timeout") or bounded), bounded)
    existing = str(result.get("options", "") or "")
    result["options"] = (
        f"{existing} {project.READ_ONLY} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    )
    return result


def session(row: tuple[Any, ...]) -> ServerSession:
    pid, application_name, client_addr, state, backend_start, state_change, xact_start = row
    return ServerSession(
        pid=int(pid),
        application_name=str(application_name),
        client_addr=client_addr,
        state=state,
        backend_start=_iso(backend_start),
        state_change=_iso(state_change),
        xact_start=_iso(xact_start),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
