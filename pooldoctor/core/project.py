"""Loading the project: sys.path, settings, the database alias and ``--database`` overrides.

The same functions run in the parent (to fail early with a clear message) and in every subject
process (to set Django up identically).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pooldoctor.core import readonly
from pooldoctor.errors import DatabaseError, ProjectError, UsageError

POSTGRES_ENGINES = ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis")
# Every session pooldoctor opens on the user's databases starts read-only (see core/readonly.py):
# probes only read, and a project wrapper or task that writes fails loudly instead of changing the
# user's data. (A transaction rolled back after each task cannot be the guard: the async ORM runs
# on executor threads, each with its own connection, so one task's queries are not one
# transaction.)
READ_ONLY = readonly.READ_ONLY


@dataclasses.dataclass(frozen=True)
class ProjectSpec:
    """How to load the project: what a subject process needs to set Django up again."""

    settings: str
    alias: str
    pythonpath: tuple[str, ...]
    cwd: str
    database: Mapping[str, Any] | None = None
    """Replacement NAME/USER/PASSWORD/HOST/PORT and extra OPTIONS, from --database."""
    read_only: bool = True
    """Start the examined alias's sessions read-only (off only for the throwaway embedded server
    and with --allow-writes)."""
    allow_writes: bool = False
    """``--allow-writes``: every alias may be written; otherwise the other aliases (which
    ``--database`` does not redirect) stay read-only whatever ``read_only`` says."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectSpec:
        return cls(**{**data, "pythonpath": tuple(data["pythonpath"])})


def prepare_sys_path(spec: ProjectSpec) -> None:
    """Put the project on sys.path the way ``manage.py`` would: its directory first."""
    os.chdir(spec.cwd)
    for entry in reversed((spec.cwd, *spec.pythonpath)):
        path = os.path.abspath(entry)
        if path not in sys.path:
            sys.path.insert(0, path)


def import_settings(module: str) -> None:
    """Import the settings module with a message for each way it can fail."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ProjectError(
            f"settings module {module!r} not found{_suggest_module(module)}",
            f"searched the project directory and --pythonpath: {', '.join(sys.path[:3])}",
        )
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise ProjectError(
            f"settings module {module!r} raised {type(exc).__name__} on import: {exc}",
            "fix the settings (run with --debug for the traceback)",
        ) from exc


def _suggest_module(module: str) -> str:
    parent, _, _ = module.rpartition(".")
    try:
        if parent:
            spec = importlib.util.find_spec(parent)
            locations = list(spec.submodule_search_locations or []) if spec else []
            names = [f"{parent}.{m.name}" for m in pkgutil.iter_modules(locations)]
        else:
            names = [m.name for m in pkgutil.iter_modules([os.getcwd()])]
    except (ImportError, ValueError):
        return ""
    close = difflib.get_close_matches(module, names, n=1)
    return f": did you mean {close[0]!r}?" if close else ""


def database_settings(alias: str) -> dict[str, Any]:
    """The alias's DATABASES entry, checked to be one pooldoctor can measure."""
    from django.conf import settings

    databases = getattr(settings, "DATABASES", {}) or {}
    if alias not in databases:
        known = ", ".join(sorted(databases)) or "none"
        raise ProjectError(
            f"database alias {alias!r} is not in DATABASES (defined: {known})",
            "pass --alias with one of those names",
        )
    entry: dict[str, Any] = databases[alias]
    engine = entry.get("ENGINE", "")
    if engine not in POSTGRES_ENGINES:
        raise ProjectError(
            f"database {alias!r} uses {engine or 'no ENGINE'}; pooldoctor measures PostgreSQL only",
            "Django's connection pool exists only in django.db.backends.postgresql (psycopg 3)",
        )
    return entry


def apply_overrides(entry: dict[str, Any], spec: ProjectSpec, application_name: str) -> None:
    """Point the alias at ``--database`` (keeping OPTIONS, pool included), tag its sessions, and
    make every alias read-only unless it may be written (call before ``django.setup()``)."""
    if spec.database:
        options = {**entry.get("OPTIONS", {}), **spec.database.get("OPTIONS", {})}
        entry.update({k: v for k, v in spec.database.items() if k != "OPTIONS"})
        entry["OPTIONS"] = options
    options = entry.setdefault("OPTIONS", {})
    options["application_name"] = application_name
    from django.conf import settings

    readonly.make_read_only(
        settings.DATABASES,
        spec.alias,
        application_name,
        examined_writable=not spec.read_only,
        others_writable=spec.allow_writes,
    )
    if not spec.allow_writes:
        readonly.install(frozenset() if spec.read_only else frozenset({spec.alias}), spec.cwd)


def parse_database_url(url: str) -> dict[str, Any]:
    """``postgresql://user:pass@host:port/name?opt=val`` as Django settings keys."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise UsageError(
            f"--database {mask_url(url)!r} is not a postgresql:// URL",
            "use postgresql://USER:PASSWORD@HOST:PORT/NAME or --database embedded",
        )
    query = dict(parse_qsl(parts.query))
    host = query.pop("host", None) or (unquote(parts.hostname) if parts.hostname else "")
    result: dict[str, Any] = {
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username) if parts.username else "",
        "PASSWORD": unquote(parts.password) if parts.password else "",
        "HOST": host,
        "PORT": str(parts.port) if parts.port else "",
    }
    if query:
        result["OPTIONS"] = query
    return result


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def describe_target(entry: Mapping[str, Any]) -> str:
    """A DSN for reports: never the password."""
    user = entry.get("USER") or ""
    password = ":***" if entry.get("PASSWORD") else ""
    at = f"{user}{password}@" if user or password else ""
    host = entry.get("HOST") or "localhost"
    port = f":{entry['PORT']}" if entry.get("PORT") else ""
    if str(host).startswith("/"):
        return f"postgresql://{at}/{entry.get('NAME', '')}?host={host}"
    return f"postgresql://{at}{host}{port}/{entry.get('NAME', '')}"


def connection_params(alias: str) -> dict[str, Any]:
    """psycopg.connect() keyword arguments, exactly as Django builds them for the alias."""
    from django.db import connections

    params: dict[str, Any] = connections[alias].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return params


@dataclasses.dataclass(frozen=True)
class ServerFacts:
    version: str
    max_connections: int
    reserved_connections: int
    other_backends: int


def probe_server(alias: str, password: str | None) -> ServerFacts:
    """Connect once (plain psycopg, no pool) and read what the audit needs."""
    import psycopg

    params = connection_params(alias)
    params.setdefault("connect_timeout", 5)
    params["application_name"] = f"{params.get('application_name', 'pooldoctor')}:preflight"[:63]
    try:
        with psycopg.connect(autocommit=True, **params) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), "
                "current_setting('max_connections')::int, "
                "current_setting('superuser_reserved_connections')::int, "
                "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') - 1"
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise _database_error(alias, exc, password) from exc
    assert row is not None
    return ServerFacts(str(row[0]), int(row[1]), int(row[2]), int(row[3]))


def _database_error(alias: str, exc: Exception, password: str | None) -> DatabaseError:
    text = " ".join(str(exc).split())
    if password:
        text = text.replace(password, "***")
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        tip = "check USER/PASSWORD for this alias, or pass --database URL"
    elif "does not exist" in lowered and "role" in lowered:
        tip = "check USER for this alias, or pass --database URL"
    elif "does not exist" in lowered and "database" in lowered:
        tip = "create the database, fix NAME, or pass --database embedded"
    elif "refused" in lowered or "no such file" in lowered or "timeout" in lowered:
        tip = "is PostgreSQL running there? Or pass --database embedded"
    else:
        tip = "check the alias's HOST, PORT and OPTIONS"
    return DatabaseError(f"cannot connect to database {alias!r}: {text}", tip)


def deep_copy_settings(entry: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(entry))
