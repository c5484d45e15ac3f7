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
import re
import sys
from collections.abc import Mapping
from typing import Any

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
            f"searched the project directory and --pythonpath: {', '.join(project_dirs())}",
        )
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise ProjectError(
            f"settings module {module!r} raised {type(exc).__name__} on import: {exc}",
            "fix the settings (run with --debug for the traceback)",
        ) from exc


def project_dirs() -> list[str]:
    """The project's own entries of sys.path: those :func:`prepare_sys_path` (or ``python -m``,
    or PYTHONPATH) put before the interpreter's, without the directory of the script that
    started us (a virtualenv's ``bin``), zip files, the standard library or site-packages."""
    script = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else None
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if path == script or not os.path.exists(path):
            continue
        inside = any(os.path.commonpath([path, p]) == p for p in prefixes if p)
        if inside or not os.path.isdir(path) or "site-packages" in path.split(os.sep):
            break  # the interpreter's own paths start here; the project's come first
        if path not in found:
            found.append(path)
    return found or [os.getcwd()]


def _suggest_module(module: str) -> str:
    parent, _, _ = module.rpartition(".")
    try:
        if parent:
            spec = importlib.util.find_spec(parent)
            locations = list(spec.submodule_search_locations or []) if spec else []
            names = [f"{parent}.{m.name}" for m in pkgutil.iter_modules(locations)]
        else:
            names = [m.name for m in pkgutil.iter_modules(project_dirs())]
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
    """``postgresql://user:pass@host:port/name?opt=val`` as Django settings keys, parsed by libpq
    (as psycopg will read it), with the port checked: every way it can be wrong is one line."""
    shown = mask_url(url)
    if url.partition("://")[0] not in ("postgres", "postgresql"):
        raise UsageError(f"--database {shown!r} is not a postgresql:// URL", DATABASE_URL_TIP)
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Error as exc:
        # libpq's own words, which quote the URL (or the token it stopped at, the password's
        # too): never the password, and the URL not twice.
        reason = " ".join(str(exc).replace(url, shown).split())
        for quoted in (f' in URI: "{shown}"', f': "{shown}"'):
            reason = reason.replace(quoted, "")
        for secret in _passwords(url):
            reason = reason.replace(secret, "***")
        raise UsageError(f"--database {shown!r} is malformed: {reason}", DATABASE_URL_TIP) from exc
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise UsageError(
                f"--database {shown!r}: port {port!r} is not a number from 1 to 65535",
                DATABASE_URL_TIP,
            )
    result: dict[str, Any] = {
        "NAME": params.pop("dbname", "") or "postgres",
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": str(params.pop("port", "")),
    }
    if params:
        result["OPTIONS"] = params
    return result


DATABASE_URL_TIP = (
    "use postgresql://USER:PASSWORD@HOST:PORT/NAME, an IPv6 HOST in [brackets], or --database "
    "embedded"
)


# libpq also takes the password as a query parameter.
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#;]*)")


def mask_url(url: str) -> str:
    """The URL with each password replaced by ``***``, however malformed the rest is (``;``
    separates the URLs of a failover list, as kombu reads a broker URL)."""
    masked = ";".join(_mask_one(part) for part in url.split(";"))
    return _QUERY_PASSWORD.sub(r"\1***", masked)


def _mask_one(url: str) -> str:
    span = _password_span(url)
    return url if span is None else f"{url[: span[0]]}***{url[span[1] :]}"


def _passwords(url: str) -> list[str]:
    """Every password in the URL, as written there."""
    spans = [_password_span(part) for part in url.split(";")]
    found = [part[s[0] : s[1]] for part, s in zip(url.split(";"), spans, strict=True) if s]
    return [p for p in found + [m[1] for m in _QUERY_PASSWORD.findall(url)] if p]


def _password_span(url: str) -> tuple[int, int] | None:
    """Where a URL's password is, read as urlsplit reads it (which raises on a malformed host):
    the authority ends at the first / ? or #, the user information at its last @, the user name
    at the first :. None without a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    colon = rest.find(":", 0, at) if at >= 0 else -1
    if colon < 0 or colon + 1 == at:
        return None
    start = len(scheme) + len(sep)
    return start + colon + 1, start + at


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


def check_user(pk: str) -> None:
    """``--user``: the project's user model has a user with primary key ``pk`` (one read, on a
    connection closed right after)."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.auth"):
        raise UsageError(
            f"--user {pk}: django.contrib.auth is not in INSTALLED_APPS",
            "leave --user out, or pass the session cookie with --cookie",
        )
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError
    from django.db import DatabaseError as DjangoDatabaseError
    from django.db import connections

    model = get_user_model()
    manager = model._default_manager
    try:
        found = manager.filter(pk=pk).exists()
    except (ValueError, TypeError, ValidationError):
        raise UsageError(
            f"--user {pk!r} is not a primary key of {model.__name__}", "pass the user's id"
        ) from None
    except DjangoDatabaseError as exc:
        raise ProjectError(f"--user {pk}: reading {model.__name__} failed: {exc}") from exc
    finally:
        connection = connections[manager.db]
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
    if not found:
        raise UsageError(
            f"--user {pk}: no {model.__name__} with that primary key in the database",
            "pass the id of an existing user",
        )
