"""What a settings module says about DATABASES, read from its syntax tree.

Settings are written in many shapes: one dict literal, ``dj_database_url.config(conn_max_age=...)``
plus ``DATABASES["default"]["OPTIONS"] = {"pool": True}``, values from the environment. The reader
collects every place that sets a pool, CONN_MAX_AGE, the pool timeout or CONN_HEALTH_CHECKS, in
any of those shapes; a value it cannot evaluate (an environment lookup) is kept as ``None``.

:func:`database_configs` is the newer reader: it evaluates the settings module (and what it
imports) with :mod:`pooldoctor.scan.values` and says, per alias, whether the pool is on, off, or
unknown, and why.
"""

from __future__ import annotations

import ast
import dataclasses
import enum

from pooldoctor.scan.syntax import keyword, last_name
from pooldoctor.scan.values import UNKNOWN, Dict, ModuleSource, Place, Value, evaluate_module

NOT_LITERAL = object()


@dataclasses.dataclass
class Setting:
    node: ast.AST
    value: object
    """The literal value, or ``NOT_LITERAL`` (built from the environment, a call, a name)."""

    @property
    def line(self) -> int:
        return getattr(self.node, "lineno", 1)

    @property
    def column(self) -> int:
        return getattr(self.node, "col_offset", 0) + 1


@dataclasses.dataclass
class DatabaseSettings:
    pools: list[Setting] = dataclasses.field(default_factory=list)
    """Pools that are or may be on (a literal False/None/{} is not a pool)."""
    conn_max_age: list[Setting] = dataclasses.field(default_factory=list)
    timeouts: list[Setting] = dataclasses.field(default_factory=list)
    health_checks: list[Setting] = dataclasses.field(default_factory=list)

    @property
    def has_pool(self) -> bool:
        return bool(self.pools)


def literal(node: ast.AST | None) -> object:
    if node is None:
        return NOT_LITERAL
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _default_of_env_call(node)


def _default_of_env_call(node: ast.AST) -> object:
    """``env.int("X", default=600)`` / ``os.environ.get("X", "600")``: the default is what runs
    where the variable is unset (a developer machine, CI)."""
    if isinstance(node, ast.Call):
        default = keyword(node, "default")
        if default is None and last_name(node.func) == "get" and len(node.args) == 2:
            default = node.args[1]
        if default is not None:
            try:
                return ast.literal_eval(default)
            except (ValueError, TypeError, SyntaxError):
                return NOT_LITERAL
        if last_name(node.func) in {"int", "float"} and node.args:
            # int(os.environ.get("X", "0")) is 0, not the string "0" (which is truthy).
            inner = _default_of_env_call(node.args[0])
            if isinstance(inner, str | int | float):
                try:
                    return int(inner) if last_name(node.func) == "int" else float(inner)
                except ValueError:
                    return NOT_LITERAL
            return NOT_LITERAL
    return NOT_LITERAL


def read_databases(tree: ast.AST) -> DatabaseSettings:
    found = DatabaseSettings()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            _read_dict(node, found)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                _read_subscript_assignment(target, node.value, found)
        elif isinstance(node, ast.Call) and last_name(node.func) in {"config", "parse"}:
            # dj_database_url.config(conn_max_age=600, conn_health_checks=True)
            if (age := keyword(node, "conn_max_age")) is not None:
                found.conn_max_age.append(Setting(age, literal(age)))
            if (checks := keyword(node, "conn_health_checks")) is not None:
                found.health_checks.append(Setting(checks, literal(checks)))
    return found


def _read_dict(node: ast.Dict, found: DatabaseSettings) -> None:
    for key, value in zip(node.keys, node.values, strict=True):
        name = key.value if isinstance(key, ast.Constant) else None
        if name == "CONN_MAX_AGE":
            found.conn_max_age.append(Setting(value, literal(value)))
        elif name == "CONN_HEALTH_CHECKS":
            found.health_checks.append(Setting(value, literal(value)))
        elif name == "OPTIONS" and isinstance(value, ast.Dict):
            _read_options(value, found)


def _read_options(options: ast.Dict, found: DatabaseSettings) -> None:
    for key, value in zip(options.keys, options.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "pool":
            _add_pool(value, found)


def _add_pool(value: ast.expr, found: DatabaseSettings) -> None:
    evaluated = literal(value)
    if evaluated is not NOT_LITERAL and not evaluated:
        return  # pool off: False, None, {}
    found.pools.append(Setting(value, evaluated))
    if isinstance(value, ast.Dict):
        for key, item in zip(value.keys, value.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "timeout":
                found.timeouts.append(Setting(item, literal(item)))


def _read_subscript_assignment(target: ast.expr, value: ast.expr, found: DatabaseSettings) -> None:
    key = _subscript_key(target)
    if key == "OPTIONS" and isinstance(value, ast.Dict):
        _read_options(value, found)
    elif key == "pool" and _subscript_key(getattr(target, "value", None)) == "OPTIONS":
        _add_pool(value, found)
    elif key == "CONN_MAX_AGE":
        found.conn_max_age.append(Setting(value, literal(value)))
    elif key == "CONN_HEALTH_CHECKS":
        found.health_checks.append(Setting(value, literal(value)))


def _subscript_key(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        value = node.slice.value
        return value if isinstance(value, str) else None
    return None


# --- The aliases a settings module configures, from its evaluated names. ---

# Django's PostgreSQL backend and the backends built on it (GeoDjango's postgis,
# django_tenants.postgresql_backend, django_prometheus.db.backends.postgresql); the others have
# no "pool" option.
_POOLED_ENGINES = ("postgresql", "postgis")


class PoolState(enum.StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class AliasConfig:
    """One database alias of one settings module, as Django would see it where the environment
    sets nothing (environment lookups take their defaults; see ``Value.from_environment``)."""

    settings: str
    """The settings module evaluated ("mysite.settings.production")."""
    alias: str
    """"default", ...; "*" when DATABASES itself (or part of it) is unknown."""
    place: Place | None
    """Where the alias's dict was written."""
    pool: PoolState
    pool_place: Place | None
    """Where OPTIONS["pool"] got its value, else the alias's place."""
    pool_options: Value | None
    """The pool's dict when known (min_size, max_size, timeout, check); None for True/unknown."""
    because: str
    """Why the pool is UNKNOWN (or, when OFF by engine, which engine)."""
    conn_max_age: Value | None
    """None: not set (Django's default, 0)."""
    health_checks: Value | None
    """CONN_HEALTH_CHECKS; None: not set."""
    engine: Value | None
    pool_value: Value | None = None
    """OPTIONS["pool"] itself when set (its ``from_environment`` names the variable that can
    change it)."""

    def pool_in(self, file: str) -> Place | None:
        """Where the pool is set (else the alias), if that is in ``file``: a check reports each
        place in the file that holds it."""
        place = self.pool_place or self.place
        return place if place is not None and place.file == file else None


def database_configs(settings_module: str, modules: ModuleSource) -> tuple[AliasConfig, ...]:
    """The aliases ``settings_module``'s DATABASES configures; () when it sets no DATABASES."""
    names = evaluate_module(settings_module, modules)
    databases = names.get("DATABASES")
    if databases is None:
        return ()
    data = databases.data
    if not isinstance(data, Dict):
        because = databases.because or "DATABASES is not a dict scan can read"
        return (_unknown_alias(settings_module, "*", databases, because),)
    configs = [_alias(settings_module, alias, value) for alias, value in data.items()]
    if data.open:
        configs.append(_unknown_alias(settings_module, "*", databases, data.open))
    return tuple(configs)


def _unknown_alias(settings: str, alias: str, value: Value, because: str) -> AliasConfig:
    return AliasConfig(
        settings, alias, value.place, PoolState.UNKNOWN, value.place, None, because, None, None,
        None, None,
    )  # fmt: skip


_URL_READER = "reads the database URL"


def _alias(settings: str, alias: str, value: Value) -> AliasConfig:
    if not isinstance(value.data, Dict):
        because = value.because or f"DATABASES[{alias!r}] is not a dict scan can read"
        return _unknown_alias(settings, alias, value, because)
    engine = value.get("ENGINE")
    conn_max_age = _known_or_unset(value, "CONN_MAX_AGE")
    health_checks = _known_or_unset(value, "CONN_HEALTH_CHECKS")
    options = _known_or_unset(value, "OPTIONS")
    pool = options.get("pool") if options is not None else None
    state, because = _pool_state(options, pool)
    if (
        engine is not None
        and isinstance(engine.data, str)
        and not any(name in engine.data for name in _POOLED_ENGINES)
    ):
        state, because = PoolState.OFF, f"{engine.data} has no connection pool"
    pool_options = pool if pool is not None and isinstance(pool.data, Dict) else None
    pool_place = pool.place if pool is not None and pool.place is not None else value.place
    return AliasConfig(
        settings, alias, value.place, state, pool_place,
        pool_options if state is PoolState.ON else None, because, conn_max_age, health_checks,
        engine, pool,
    )  # fmt: skip


def _known_or_unset(alias: Value, key: str) -> Value | None:
    """``alias[key]``; None when unset. A database URL reader (``dj_database_url.config()``,
    ``env.db()``) sets ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` from its keywords (0 and
    False without them) and ``OPTIONS`` only from the URL's query, which carries no pool: a key
    it leaves out is unset, not unknown."""
    found = alias.get(key)
    if (
        found is not None
        and not found.known
        and isinstance(alias.data, Dict)
        and _URL_READER in alias.data.open
        and key not in alias.data
    ):
        return None
    return found


def _pool_state(options: Value | None, pool: Value | None) -> tuple[PoolState, str]:
    if options is None:
        return PoolState.OFF, ""
    if pool is None:
        return PoolState.OFF, ""
    data = pool.data
    if data is UNKNOWN:
        return PoolState.UNKNOWN, pool.because or "OPTIONS['pool'] is unknown"
    if isinstance(data, Dict):
        if data:
            return PoolState.ON, ""
        if data.open:
            return PoolState.UNKNOWN, data.open
        return PoolState.OFF, ""
    return (PoolState.ON if data else PoolState.OFF), ""
