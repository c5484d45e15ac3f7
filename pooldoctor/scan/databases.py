"""What a settings module says about DATABASES, read from its syntax tree.

Settings are written in many shapes: one dict literal, ``dj_database_url.config(conn_max_age=...)``
plus ``DATABASES["default"]["OPTIONS"] = {"pool": True}``, values from the environment. The reader
collects every place that sets a pool, CONN_MAX_AGE, the pool timeout or CONN_HEALTH_CHECKS, in
any of those shapes; a value it cannot evaluate (an environment lookup) is kept as ``None``.
"""

from __future__ import annotations

import ast
import dataclasses

from pooldoctor.scan.syntax import keyword, last_name

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
