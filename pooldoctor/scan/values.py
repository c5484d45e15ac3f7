"""The values a settings module's top-level names end up with, found without importing it.

Scan never runs a project's code, yet ``DATABASES`` is built in many shapes: one literal, a dict
filled item by item, ``{**base, ...}`` and ``|`` merges, helpers in ``config/db.py``, settings
split across modules with ``from .base import *``, values from the environment. This module runs
the top-level statements of a module abstractly, the way Python would for those shapes: dicts are
mutable objects shared by every name that holds them, until the end, when the values are frozen.

What it cannot tell is ``UNKNOWN``, with a reason a user can read, never a guess. An environment
lookup with a default takes the default (what runs where the variable is unset: CI, a laptop) and
remembers the variable, so a report can say "pool on unless DB_POOL says otherwise". An ``if``
whose condition cannot be evaluated runs both branches and keeps what they agree on.

The input is untrusted: every evaluation has a step budget and depth limits, and sizes are capped,
so a hostile module costs milliseconds and yields ``UNKNOWN``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol

STEPS: Final = 200_000
"""Statements and expressions evaluated per :func:`evaluate_module`, imported modules included."""
EXPRESSION_DEPTH: Final = 60
BLOCK_DEPTH: Final = 20
CALL_DEPTH: Final = 5
IMPORT_DEPTH: Final = 20
LOOP_ITEMS: Final = 1_000
MODULE_STEPS: Final = 50_000
"""The share of the steps one imported module may use."""
MODULE_COST: Final = 200
"""What importing a module costs beyond its statements (reading and parsing it)."""
MAX_TEXT: Final = 10_000
MAX_INT: Final = 10**18


class Unknown:
    """A value scan cannot tell (the singleton :data:`UNKNOWN`)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __copy__(self) -> Unknown:
        return self

    def __deepcopy__(self, memo: object) -> Unknown:
        return self


UNKNOWN: Final[Unknown] = Unknown()


@dataclasses.dataclass(frozen=True)
class Place:
    file: str
    """The path as :meth:`ModuleSource.module` returns it."""
    line: int
    column: int
    """1-based."""


class Dict(Mapping[str, "Value"]):
    """A frozen dict of string keys. ``open`` is set (to a reason) when it may also hold keys
    scan cannot see (``dj_database_url.config()``, ``{**unknown, ...}``): a key missing from it
    is then unknown rather than absent."""

    __slots__ = ("_items", "open")

    def __init__(self, items: Mapping[str, Value] | None = None, open: str = "") -> None:
        self._items: dict[str, Value] = dict(items or {})
        self.open = open

    def __getitem__(self, key: str) -> Value:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dict):
            return self._items == other._items and self.open == other.open
        return isinstance(other, Mapping) and not self.open and self._items == dict(other)

    def __hash__(self) -> int:
        return hash((tuple(self._items.items()), self.open))

    def __repr__(self) -> str:
        extra = f", open={self.open!r}" if self.open else ""
        return f"Dict({self._items!r}{extra})"


@dataclasses.dataclass(frozen=True)
class Value:
    data: object
    """None, bool, int, float, str, a :class:`Dict`, a tuple of Values (lists too), or UNKNOWN."""
    place: Place | None
    """Where the expression that produced it was written."""
    because: str = ""
    """When ``data`` is UNKNOWN: why, for a user ("os.environ['DB_POOL'] has no default")."""
    from_environment: str | None = None
    """The environment variable this value is the default of (or was decided by), if any."""

    @property
    def known(self) -> bool:
        return self.data is not UNKNOWN

    def get(self, key: str) -> Value | None:
        """The item ``key`` of a dict value; an UNKNOWN Value when this is not a dict scan can
        read or the key may be in its unseen part; None when the dict has no such key."""
        if isinstance(self.data, Dict):
            if key in self.data:
                return self.data[key]
            if self.data.open:
                return Value(UNKNOWN, self.place, self.data.open, self.from_environment)
            return None
        because = self.because or "not a dict"
        return Value(UNKNOWN, self.place, because, self.from_environment)

    def plain(self) -> object:
        """The data as plain Python (dicts and tuples), UNKNOWN where unknown."""
        if isinstance(self.data, Dict):
            return {k: v.plain() for k, v in self.data.items()}
        if isinstance(self.data, tuple):
            return tuple(v.plain() for v in self.data)
        return self.data


class ModuleSource(Protocol):
    def module(self, name: str) -> tuple[str, ast.Module] | None:
        """(relative file path, parsed tree) of a project module by dotted name, or None if
        not in the project."""


def evaluate_module(name: str, modules: ModuleSource) -> dict[str, Value]:
    """The module-level names after running its top-level statements abstractly (an empty dict
    when the module is not in the project)."""
    evaluator = _Evaluator(modules)
    try:
        namespace = evaluator.module_namespace(name, 0)
    except _OutOfBudget as error:
        return _everything_unknown(modules, name, str(error))
    except RecursionError:
        return _everything_unknown(modules, name, "too deeply nested to evaluate")
    if namespace is None:
        return {}
    freezer = _Freezer()
    return {key: freezer.freeze(value) for key, value in namespace.items()}


# --- What evaluation works with: mutable dicts and lists, shared by reference. ---


class _Dict:
    """A dict during evaluation. ``open``: other keys may exist (the reason); ``unknown``: the
    whole dict could not be followed (a loop over unknown items wrote to it)."""

    def __init__(self, items: dict[Any, _V] | None = None, open: str = "") -> None:
        self.items: dict[Any, _V] = items if items is not None else {}
        self.open = open
        self.unknown = ""


class _List:
    def __init__(self, items: list[_V]) -> None:
        self.items = items


@dataclasses.dataclass(frozen=True, eq=False)
class _Function:
    node: ast.FunctionDef
    frame: _Frame


@dataclasses.dataclass(frozen=True)
class _External:
    """Something from outside the project (``os.environ``, ``dj_database_url.config``), or a
    name the project never binds, by its dotted name."""

    name: str
    bound: bool = True


@dataclasses.dataclass(frozen=True)
class _ProjectModule:
    name: str


@dataclasses.dataclass(frozen=True)
class _EnvReader:
    """``environ.Env(DEBUG=(bool, False))``: its scheme's defaults by variable."""

    defaults: tuple[tuple[str, _V], ...] = ()


@dataclasses.dataclass(frozen=True)
class _Builtin:
    name: str


@dataclasses.dataclass(frozen=True)
class _Method:
    owner: _V
    name: str


@dataclasses.dataclass(frozen=True)
class _V:
    data: object
    place: Place | None
    because: str = ""
    env: str | None = None


@dataclasses.dataclass(eq=False)
class _Frame:
    module: str
    file: str
    is_package: bool
    globals: dict[str, _V]
    locals: dict[str, _V] | None = None

    @property
    def scope(self) -> dict[str, _V]:
        return self.locals if self.locals is not None else self.globals


class _OutOfBudget(Exception):
    pass


class _Return(Exception):
    def __init__(self, value: _V) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_BUILTINS = frozenset({"dict", "list", "tuple", "int", "float", "str", "bool", "len", "set"})
_ENV_GET = frozenset({"os.environ.get", "os.getenv", "os.environ.setdefault", "environ.get"})
_ENV_CASTS = frozenset({"bool", "int", "float", "str", "json", "dict", "list", "tuple", "path"})
_URL_CONFIGS = frozenset({"config", "parse"})
_STR_METHODS = frozenset({"lower", "upper", "strip", "casefold", "title"})


def _place(file: str, node: ast.AST) -> Place:
    return Place(file, getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1)


def _short(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, RecursionError, AttributeError):
        return "an expression"
    return text if len(text) <= 60 else text[:57] + "..."


def _everything_unknown(modules: ModuleSource, name: str, because: str) -> dict[str, Value]:
    found = modules.module(name)
    if found is None:
        return {}
    return _assigned_names(*found, because)


def _assigned_names(file: str, tree: ast.Module, because: str) -> dict[str, Value]:
    """Every name the module may bind, unknown."""
    names: dict[str, Value] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.setdefault(node.id, Value(UNKNOWN, _place(file, node), because))
    return names


class _Evaluator:
    def __init__(self, modules: ModuleSource) -> None:
        self.modules = modules
        self.steps = 0
        self.limit = STEPS
        self.depth = 0
        self.calls = 0
        self.namespaces: dict[str, dict[str, _V] | None] = {}
        self.condition_env: list[str] = []
        self.import_depth = 0
        self.frames: dict[str, _Frame] = {}

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.limit:
            raise _OutOfBudget("too large to evaluate")

    # --- Modules and imports ---

    def module_namespace(self, name: str, depth: int) -> dict[str, _V] | None:
        """The module's namespace, evaluated once (a module being evaluated, in an import
        cycle, gives its names so far, as Python's partially initialised module does)."""
        if name in self.namespaces:
            return self.namespaces[name]
        found = self.modules.module(name)
        if found is None or depth > IMPORT_DEPTH:
            self.namespaces[name] = None
            return None
        file, tree = found
        namespace: dict[str, _V] = {}
        self.namespaces[name] = namespace
        is_package = file.replace("\\", "/").rsplit("/", 1)[-1] == "__init__.py"
        frame = _Frame(name, file, is_package, namespace)
        self.frames[name] = frame
        saved, self.import_depth = self.import_depth, depth
        saved_limit = self.limit
        if depth:
            # An imported module (models, a whole app) gets a share of the budget: when it runs
            # out, its names are unknown and the settings module goes on.
            self.step(MODULE_COST)
            self.limit = min(self.limit, self.steps + MODULE_STEPS)
        try:
            self.block(tree.body, frame, 0)
        except _OutOfBudget as error:
            if not depth:
                raise
            namespace.update(
                (key, _V(value.data, value.place, value.because))
                for key, value in _assigned_names(file, tree, f"{name} is {error}").items()
            )
        finally:
            self.import_depth = saved
            self.limit = saved_limit
        return namespace

    def in_project(self, name: str) -> bool:
        return self.modules.module(name) is not None

    def absolute(self, node: ast.ImportFrom, frame: _Frame) -> str:
        if not node.level:
            return node.module or ""
        package = frame.module if frame.is_package else frame.module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module and package else (node.module or package)

    def import_from(self, node: ast.ImportFrom, frame: _Frame) -> None:
        base = self.absolute(node, frame)
        namespace = self.module_namespace(base, self.import_depth + 1)
        # Names are copied (sharing kept within one import): a settings module that changes an
        # imported dict must not change the base module that other settings modules import.
        copier = _Copier(self)
        for alias in node.names:
            if alias.name == "*":
                if namespace is None:
                    continue  # names unknown to scan; most such imports are optional local files
                exported = self.exported(namespace)
                for key in exported:
                    frame.scope[key] = copier.value(namespace[key])
                continue
            bound = alias.asname or alias.name
            place = _place(frame.file, node)
            if namespace is not None and alias.name in namespace:
                frame.scope[bound] = copier.value(namespace[alias.name])
            elif self.in_project(f"{base}.{alias.name}"):
                frame.scope[bound] = _V(_ProjectModule(f"{base}.{alias.name}"), place)
            elif namespace is not None:
                because = f"{base}.{alias.name} is not defined in the project"
                frame.scope[bound] = _V(UNKNOWN, place, because)
            else:
                frame.scope[bound] = _V(_External(f"{base}.{alias.name}"), place)

    def exported(self, namespace: dict[str, _V]) -> list[str]:
        names = namespace.get("__all__")
        if names is not None and isinstance(names.data, _List | tuple):
            items = names.data.items if isinstance(names.data, _List) else names.data
            listed = [v.data for v in items if isinstance(v.data, str)]
            return [n for n in listed if n in namespace]
        return [n for n in namespace if not n.startswith("_")]

    def import_(self, node: ast.Import, frame: _Frame) -> None:
        place = _place(frame.file, node)
        for alias in node.names:
            full = alias.name
            shown = full if alias.asname else full.partition(".")[0]
            bound = alias.asname or shown
            if self.in_project(shown) or self.in_project(full):
                frame.scope[bound] = _V(_ProjectModule(shown), place)
            else:
                frame.scope[bound] = _V(_External(shown), place)

    # --- Statements ---

    def block(self, body: list[ast.stmt], frame: _Frame, depth: int) -> None:
        if depth > BLOCK_DEPTH:
            self.havoc(body, frame, "statements nested too deeply to evaluate")
            return
        for statement in body:
            self.step()
            self.statement(statement, frame, depth)

    def statement(self, node: ast.stmt, frame: _Frame, depth: int) -> None:
        if isinstance(node, ast.Assign):
            value = self.eval(node.value, frame)
            for target in node.targets:
                self.assign(target, value, frame)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign(node.target, self.eval(node.value, frame), frame)
        elif isinstance(node, ast.AugAssign):
            self.aug_assign(node, frame)
        elif isinstance(node, ast.Expr):
            self.eval(node.value, frame)
        elif isinstance(node, ast.If):
            self.if_(node, frame, depth)
        elif isinstance(node, ast.Try | ast.TryStar):
            # try: from .local import * / except ImportError: the try body is what runs.
            self.block(node.body, frame, depth + 1)
            self.block(node.orelse, frame, depth + 1)
            self.block(node.finalbody, frame, depth + 1)
        elif isinstance(node, ast.ImportFrom):
            self.import_from(node, frame)
        elif isinstance(node, ast.Import):
            self.import_(node, frame)
        elif isinstance(node, ast.FunctionDef):
            # A helper reads its module's names as they are when it is called.
            defining = self.frames.get(frame.module, frame)
            frame.scope[node.name] = _V(_Function(node, defining), _place(frame.file, node))
        elif isinstance(node, ast.Return):
            if frame.locals is None:
                return
            value = self.eval(node.value, frame) if node.value else _V(None, None)
            raise _Return(value)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                self.delete(target, frame)
        elif isinstance(node, ast.For):
            self.for_(node, frame, depth)
        elif isinstance(node, ast.With):
            for item in node.items:
                if item.optional_vars is not None:
                    because = f"{_short(item.context_expr)} is not run by scan"
                    self.assign(item.optional_vars, self.unknown(node, frame, because), frame)
            self.block(node.body, frame, depth + 1)
        elif isinstance(node, ast.Break):
            raise _Break
        elif isinstance(node, ast.Continue):
            raise _Continue
        elif isinstance(node, ast.Pass | ast.Global | ast.Nonlocal | ast.Assert | ast.Raise):
            if isinstance(node, ast.Raise) and frame.locals is not None:
                raise _Return(self.unknown(node, frame, "the helper raises an exception"))
        elif isinstance(node, ast.ClassDef | ast.AsyncFunctionDef):
            frame.scope[node.name] = self.unknown(node, frame, f"{node.name} is a class")
        else:
            because = f"{type(node).__name__.lower()} statements are not evaluated"
            if frame.locals is not None:
                raise _Return(self.unknown(node, frame, because))
            self.havoc([node], frame, because)

    def if_(self, node: ast.If, frame: _Frame, depth: int) -> None:
        test = self.eval(node.test, frame)
        truth = self.truth(test)
        if truth is not None:
            if test.env:
                self.condition_env.append(test.env)
            try:
                self.block(node.body if truth else node.orelse, frame, depth + 1)
            finally:
                if test.env:
                    self.condition_env.pop()
            return
        because = f"depends on {_short(node.test)}"
        scopes = [frame.globals] if frame.locals is None else [frame.locals, frame.globals]
        self.step(sum(len(s) for s in scopes))
        left = _Copier(self).scopes(scopes)
        right = _Copier(self).scopes(scopes)
        returned: list[_V | None] = []
        for branch, copies in ((node.body, left), (node.orelse, right)):
            branch_frame = dataclasses.replace(
                frame, globals=copies[-1], locals=copies[0] if frame.locals is not None else None
            )
            try:
                self.block(branch, branch_frame, depth + 1)
                returned.append(None)
            except _Return as done:
                returned.append(done.value)
        merger = _Merger(self, because)
        for scope, a, b in zip(scopes, left, right, strict=True):
            merged = merger.scope(a, b)
            scope.clear()
            scope.update(merged)
        if returned[0] is not None and returned[1] is not None:
            raise _Return(merger.value(returned[0], returned[1]))
        if returned[0] is not None or returned[1] is not None:
            raise _Return(self.unknown(node, frame, f"returns early when {_short(node.test)}"))

    def for_(self, node: ast.For, frame: _Frame, depth: int) -> None:
        items = self.iterate(self.eval(node.iter, frame))
        if items is None or len(items) > LOOP_ITEMS or node.orelse:
            self.havoc(node.body, frame, f"set in a loop over {_short(node.iter)}")
            self.assign(node.target, self.unknown(node, frame, "a loop variable"), frame)
            return
        for item in items:
            self.assign(node.target, item, frame)
            try:
                self.block(node.body, frame, depth + 1)
            except _Break:
                break
            except _Continue:
                continue

    def iterate(self, value: _V) -> list[_V] | None:
        data = value.data
        if isinstance(data, _Dict) and not data.open and not data.unknown:
            return [_V(k, value.place, env=value.env) for k in data.items]
        if isinstance(data, _List):
            return list(data.items)
        if isinstance(data, tuple):
            return list(data)
        return None

    def havoc(self, body: list[ast.stmt], frame: _Frame, because: str) -> None:
        """What statements that cannot be followed may change becomes unknown: the names they
        bind and the dicts they write to."""
        for node in body:
            for child in ast.walk(node):
                self.step()
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
                    frame.scope[child.id] = self.unknown(child, frame, because)
                elif isinstance(child, ast.FunctionDef | ast.ClassDef | ast.alias):
                    name = getattr(child, "name", "")
                    if isinstance(child, ast.alias):
                        name = child.asname or name.partition(".")[0]
                    if name != "*":
                        frame.scope[name] = self.unknown(node, frame, because)
                elif isinstance(child, ast.Subscript | ast.Attribute) and (
                    isinstance(child.ctx, ast.Store | ast.Del) or isinstance(child, ast.Attribute)
                ):
                    self.spoil(child.value, frame, because)

    def spoil(self, node: ast.expr, frame: _Frame, because: str) -> None:
        """Mark the deepest dict ``node`` reaches (without running calls) as unknown."""
        chain = []
        while isinstance(node, ast.Subscript | ast.Attribute):
            chain.append(node)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in frame.scope:
            return
        current = frame.scope[node.id]
        for link in reversed(chain):
            if not isinstance(link, ast.Subscript) or not isinstance(current.data, _Dict):
                break
            key = self.eval(link.slice, frame)
            if not _hashable(key.data) or key.data not in current.data.items:
                break
            current = current.data.items[key.data]
        if isinstance(current.data, _Dict):
            current.data.unknown = because
        elif isinstance(current.data, _List):
            current.data.items[:] = [_V(UNKNOWN, current.place, because)]

    def assign(self, target: ast.expr, value: _V, frame: _Frame) -> None:
        if self.condition_env and value.env is None:
            value = dataclasses.replace(value, env=self.condition_env[-1])
        if isinstance(target, ast.Name):
            frame.scope[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            items = self.iterate(value)
            if items is None or len(items) != len(target.elts):
                items = [self.unknown(target, frame, value.because or "cannot unpack")] * len(
                    target.elts
                )
            for element, item in zip(target.elts, items, strict=True):
                self.assign(element, item, frame)
        elif isinstance(target, ast.Subscript):
            container = self.container(target.value, frame)
            key = self.eval(target.slice, frame)
            self.set_item(container, key, value, target, frame)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, self.unknown(target, frame, "a starred target"), frame)

    def container(self, node: ast.expr, frame: _Frame) -> _V:
        """The dict a subscript assignment writes into. In a dict scan sees only part of
        (``dj_database_url.config()``), ``DATABASES["default"]["OPTIONS"]["pool"] = True`` means
        the project knows OPTIONS is there: it is taken as a dict of unknown other keys, so the
        pool written into it is known."""
        if not isinstance(node, ast.Subscript) or isinstance(node.slice, ast.Slice):
            return self.eval(node, frame)
        owner = self.container(node.value, frame)
        key = self.eval(node.slice, frame)
        data = owner.data
        if (
            isinstance(data, _Dict)
            and data.open
            and not data.unknown
            and _hashable(key.data)
            and key.data not in data.items
        ):
            data.items[key.data] = _V(_Dict(open=data.open), _place(frame.file, node))
        return self.item(owner, key, node, frame)

    def set_item(self, container: _V, key: _V, value: _V, node: ast.AST, frame: _Frame) -> None:
        data = container.data
        if isinstance(data, _Dict):
            if _hashable(key.data) and key.data is not UNKNOWN:
                data.items[key.data] = value
            else:
                data.unknown = key.because or f"a key scan cannot tell: {_short(node)}"
        elif (
            isinstance(data, _List) and isinstance(key.data, int) and _within(key.data, data.items)
        ):
            data.items[key.data] = value

    def delete(self, target: ast.expr, frame: _Frame) -> None:
        if isinstance(target, ast.Name):
            frame.scope.pop(target.id, None)
        elif isinstance(target, ast.Subscript):
            container = self.container(target.value, frame)
            key = self.eval(target.slice, frame)
            if isinstance(container.data, _Dict):
                if _hashable(key.data) and key.data is not UNKNOWN:
                    container.data.items.pop(key.data, None)
                else:
                    container.data.unknown = "an item deleted by a key scan cannot tell"

    def aug_assign(self, node: ast.AugAssign, frame: _Frame) -> None:
        if isinstance(node.target, ast.Attribute):
            return
        current = self.eval(node.target, frame)
        right = self.eval(node.value, frame)
        if isinstance(current.data, _Dict) and isinstance(node.op, ast.BitOr):
            self.update(current, right, node)  # |= changes the dict in place, as Python does
            return
        if isinstance(current.data, _List) and isinstance(node.op, ast.Add):
            items = self.iterate(right)
            if items is None:
                current.data.items[:] = [self.unknown(node, frame, right.because or "unknown")]
            else:
                current.data.items.extend(items)
            return
        self.assign(node.target, self.binop(node.op, current, right, node, frame), frame)

    # --- Expressions ---

    def unknown(self, node: ast.AST, frame: _Frame, because: str, env: str | None = None) -> _V:
        return _V(UNKNOWN, _place(frame.file, node), because, env)

    def eval(self, node: ast.expr, frame: _Frame) -> _V:
        self.step()
        self.depth += 1
        try:
            if self.depth > EXPRESSION_DEPTH:
                return self.unknown(node, frame, "an expression nested too deeply to evaluate")
            return self.expression(node, frame)
        finally:
            self.depth -= 1

    def expression(self, node: ast.expr, frame: _Frame) -> _V:
        place = _place(frame.file, node)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str | int | float | bool) or value is None:
                if isinstance(value, str) and len(value) > MAX_TEXT:
                    return _V(UNKNOWN, place, "a string too long to follow")
                return _V(value, place)
            return _V(UNKNOWN, place, f"a {type(value).__name__} constant")
        if isinstance(node, ast.Name):
            return self.name(node, frame)
        if isinstance(node, ast.Dict):
            return self.dict_display(node, frame)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items: list[_V] = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    spread = self.iterate(self.eval(element.value, frame))
                    if spread is None:
                        return _V(UNKNOWN, place, f"{_short(element.value)} is unknown")
                    items.extend(spread)
                else:
                    items.append(self.eval(element, frame))
            if isinstance(node, ast.List):
                return _V(_List(items), place)
            return _V(tuple(items), place)
        if isinstance(node, ast.Attribute):
            return self.attribute(self.eval(node.value, frame), node.attr, node, frame)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, frame)
        if isinstance(node, ast.Call):
            return self.call(node, frame)
        if isinstance(node, ast.BinOp):
            left = self.eval(node.left, frame)
            right = self.eval(node.right, frame)
            return self.binop(node.op, left, right, node, frame)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, frame)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node, frame)
        if isinstance(node, ast.Compare):
            return self.compare(node, frame)
        if isinstance(node, ast.IfExp):
            test = self.eval(node.test, frame)
            truth = self.truth(test)
            if truth is None:
                because = f"depends on {_short(node.test)}"
                left = self.eval(node.body, frame)
                right = self.eval(node.orelse, frame)
                return _Merger(self, because).value(left, right)
            chosen = self.eval(node.body if truth else node.orelse, frame)
            return _with_env(chosen, test.env)
        if isinstance(node, ast.JoinedStr):
            return self.fstring(node, frame)
        if isinstance(node, ast.NamedExpr):
            named = self.eval(node.value, frame)
            self.assign(node.target, named, frame)
            return named
        return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan")

    def name(self, node: ast.Name, frame: _Frame) -> _V:
        if frame.locals is not None and node.id in frame.locals:
            return frame.locals[node.id]
        if node.id in frame.globals:
            return frame.globals[node.id]
        place = _place(frame.file, node)
        if node.id in _BUILTINS:
            return _V(_Builtin(node.id), place)
        if node.id == "__name__":
            return _V(frame.module, place)
        if node.id == "__file__":
            return _V(UNKNOWN, place, "the settings file's path")
        return _V(_External(node.id, bound=False), place)

    def dict_display(self, node: ast.Dict, frame: _Frame) -> _V:
        result = _V(_Dict(), _place(frame.file, node))
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                self.update(result, self.eval(value, frame), value)
            else:
                evaluated_key = self.eval(key, frame)
                self.set_item(result, evaluated_key, self.eval(value, frame), key, frame)
        return result

    def update(self, target: _V, source: _V, node: ast.AST) -> None:
        """``target.update(source)``, ``{**target, **source}``, ``target |= source``."""
        assert isinstance(target.data, _Dict)
        data = source.data
        if isinstance(data, _Dict):
            if data.unknown:
                target.data.unknown = data.unknown
            if data.open:
                # Keys written earlier may be replaced by the unseen part.
                target.data.items.clear()
                target.data.open = data.open
            target.data.items.update(data.items)
            self.step(len(data.items))
        else:
            target.data.items.clear()
            target.data.open = source.because or f"{_short(node)} is not a dict scan can read"

    def attribute(self, owner: _V, attr: str, node: ast.AST, frame: _Frame) -> _V:
        place = _place(frame.file, node)
        data = owner.data
        if isinstance(data, _External):
            return _V(_External(f"{data.name}.{attr}", data.bound), place)
        if isinstance(data, _ProjectModule):
            namespace = self.module_namespace(data.name, self.import_depth + 1)
            if namespace is not None and attr in namespace:
                return namespace[attr]
            if self.in_project(f"{data.name}.{attr}"):
                return _V(_ProjectModule(f"{data.name}.{attr}"), place)
            return _V(UNKNOWN, place, f"{data.name}.{attr} is not defined in the project")
        if data is UNKNOWN:
            return _V(UNKNOWN, place, owner.because, owner.env)
        return _V(_Method(owner, attr), place)

    def subscript(self, node: ast.Subscript, frame: _Frame) -> _V:
        owner = self.eval(node.value, frame)
        place = _place(frame.file, node)
        if isinstance(owner.data, _External) and owner.data.name.endswith("environ"):
            key = self.eval(node.slice, frame)
            variable = key.data if isinstance(key.data, str) else "?"
            because = f"{_short(node)} has no default"
            return _V(UNKNOWN, place, because, variable)
        if isinstance(node.slice, ast.Slice):
            return _V(UNKNOWN, place, "slices are not evaluated")
        key = self.eval(node.slice, frame)
        return self.item(owner, key, node, frame)

    def item(self, owner: _V, key: _V, node: ast.AST, frame: _Frame) -> _V:
        place = _place(frame.file, node)
        data = owner.data
        if data is UNKNOWN:
            return _V(UNKNOWN, place, owner.because, owner.env)
        if key.data is UNKNOWN:
            return _V(UNKNOWN, place, key.because, key.env)
        if isinstance(data, _Dict):
            if data.unknown:
                return _V(UNKNOWN, place, data.unknown)
            if _hashable(key.data) and key.data in data.items:
                return data.items[key.data]
            if data.open:
                return _V(UNKNOWN, place, data.open)
            return _V(UNKNOWN, place, f"{_short(node)}: no such key")
        sequence = data.items if isinstance(data, _List) else data
        index = key.data
        if (
            isinstance(sequence, tuple | list)
            and isinstance(index, int)
            and _within(index, sequence)
        ):
            return sequence[index]
        return _V(UNKNOWN, place, f"{_short(node)} is not evaluated")

    def fstring(self, node: ast.JoinedStr, frame: _Frame) -> _V:
        parts = []
        env = None
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                if part.format_spec is not None or part.conversion not in (-1, 115):
                    return self.unknown(node, frame, "a formatted string")
                value = self.eval(part.value, frame)
                if not isinstance(value.data, str | int | float | bool) and value.data is not None:
                    return _V(UNKNOWN, _place(frame.file, node), value.because, value.env)
                env = env or value.env
                parts.append(str(value.data))
            else:
                parts.append(str(getattr(part, "value", "")))
        text = "".join(parts)
        if len(text) > MAX_TEXT:
            return self.unknown(node, frame, "a string too long to follow")
        return _V(text, _place(frame.file, node), env=env)

    def truth(self, value: _V) -> bool | None:
        data = value.data
        if data is UNKNOWN or isinstance(data, _Method):
            return None
        if isinstance(data, _Dict):
            if data.unknown or (data.open and not data.items):
                return None
            return bool(data.items)
        if isinstance(data, _List):
            return bool(data.items)
        if isinstance(data, tuple):
            return bool(data)
        if isinstance(data, _External) and not data.bound:
            return None
        if isinstance(data, _External):
            return None
        if isinstance(data, _Function | _ProjectModule | _EnvReader | _Builtin):
            return True
        return bool(data)

    def unary(self, node: ast.UnaryOp, frame: _Frame) -> _V:
        operand = self.eval(node.operand, frame)
        place = _place(frame.file, node)
        if isinstance(node.op, ast.Not):
            truth = self.truth(operand)
            if truth is None:
                return _V(UNKNOWN, place, operand.because, operand.env)
            return _V(not truth, place, env=operand.env)
        data = operand.data
        if isinstance(data, int | float) and not isinstance(node.op, ast.Invert):
            return _V(-data if isinstance(node.op, ast.USub) else data, place, env=operand.env)
        return _V(UNKNOWN, place, operand.because or f"{_short(node)}", operand.env)

    def boolop(self, node: ast.BoolOp, frame: _Frame) -> _V:
        result = self.eval(node.values[0], frame)
        for following in node.values[1:]:
            truth = self.truth(result)
            if truth is None:
                because = result.because or f"depends on {_short(node)}"
                return self.unknown(node, frame, because, result.env)
            if truth is isinstance(node.op, ast.Or):
                return result
            result = self.eval(following, frame)
        return result

    def compare(self, node: ast.Compare, frame: _Frame) -> _V:
        left = self.eval(node.left, frame)
        env = left.env
        outcome: object = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.eval(right_node, frame)
            env = env or right.env
            a, b = _plain(left), _plain(right)
            if isinstance(op, ast.In | ast.NotIn) and _names_test_run(right, a):
                # "test" in sys.argv, "pytest" in sys.modules: scan reports production, where
                # no test runner runs.
                a, b = "test", ""
            if a is UNKNOWN or b is UNKNOWN:
                because = left.because or right.because or f"depends on {_short(node)}"
                return self.unknown(node, frame, because, env)
            if (isinstance(a, _Keys) or isinstance(b, _Keys)) and not isinstance(
                op, ast.In | ast.NotIn
            ):
                return self.unknown(node, frame, f"cannot compare in {_short(node)}", env)
            try:
                outcome = _COMPARE[type(op)](a, b)
            except (TypeError, KeyError):
                return self.unknown(node, frame, f"cannot compare in {_short(node)}", env)
            if not outcome:
                break
            left = right
        return _V(bool(outcome), _place(frame.file, node), env=env)

    def binop(self, op: ast.operator, left: _V, right: _V, node: ast.AST, frame: _Frame) -> _V:
        place = _place(frame.file, node)
        env = left.env or right.env
        a, b = left.data, right.data
        if isinstance(op, ast.BitOr) and isinstance(a, _Dict) and isinstance(b, _Dict | Unknown):
            result = _V(_copy_dict(a), place, env=env)
            self.update(result, right, node)
            return result
        if isinstance(op, ast.BitOr) and a is UNKNOWN and isinstance(b, _Dict):
            # unknown | {...}: the right's keys are known, the rest is not.
            result = _V(_Dict(open=left.because or f"{_short(node)} is unknown"), place, env=env)
            self.update(result, right, node)
            return result
        if a is UNKNOWN or b is UNKNOWN:
            return _V(UNKNOWN, place, left.because or right.because, env)
        try:
            value = _arithmetic(op, a, b)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            value = UNKNOWN
        if isinstance(a, _List | tuple) and isinstance(op, ast.Add) and type(a) is type(b):
            items = a.items if isinstance(a, _List) else list(a)
            more = b.items if isinstance(b, _List) else list(b)
            self.step(len(items) + len(more))
            value = _List(items + more) if isinstance(a, _List) else tuple(items + more)
        if value is UNKNOWN:
            return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan", env)
        return _V(value, place, env=env)

    # --- Calls ---

    def call(self, node: ast.Call, frame: _Frame) -> _V:
        function = self.eval(node.func, frame)
        data = function.data
        if isinstance(data, _Function):
            return self.call_function(data, node, frame)
        if isinstance(data, _Method):
            return self.method(data, node, frame)
        if isinstance(data, _Builtin):
            return self.builtin(data.name, node, frame)
        if isinstance(data, _EnvReader):
            return self.env_call(data, "", node, frame)
        if isinstance(data, _External):
            return self.external(data, node, frame)
        if data is UNKNOWN:
            return self.unknown(node, frame, function.because, function.env)
        return self.unknown(node, frame, f"{_short(node.func)} is not callable")

    def arguments(self, node: ast.Call, frame: _Frame) -> tuple[list[_V], dict[str, _V]] | None:
        positional: list[_V] = []
        keywords: dict[str, _V] = {}
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                items = self.iterate(self.eval(argument.value, frame))
                if items is None:
                    return None
                positional.extend(items)
            else:
                positional.append(self.eval(argument, frame))
        for keyword in node.keywords:
            value = self.eval(keyword.value, frame)
            if keyword.arg is not None:
                keywords[keyword.arg] = value
            elif isinstance(value.data, _Dict) and not value.data.open and not value.data.unknown:
                keywords.update({k: v for k, v in value.data.items.items() if isinstance(k, str)})
            else:
                return None
        return positional, keywords

    def call_function(self, function: _Function, node: ast.Call, frame: _Frame) -> _V:
        name = function.node.name
        if self.calls >= CALL_DEPTH:
            return self.unknown(node, frame, f"{name}() calls nested too deeply to evaluate")
        bound = self.arguments(node, frame)
        if bound is None:
            return self.unknown(node, frame, f"{name}()'s arguments are unknown")
        positional, keywords = bound
        spec = function.node.args
        defining = function.frame
        parameters = [*spec.posonlyargs, *spec.args]
        locals_: dict[str, _V] = {}
        defaults = [self.eval(d, defining) for d in spec.defaults]
        for index, parameter in enumerate(parameters):
            from_default = index - (len(parameters) - len(defaults))
            if index < len(positional):
                locals_[parameter.arg] = positional[index]
            elif parameter.arg in keywords:
                locals_[parameter.arg] = keywords.pop(parameter.arg)
            elif from_default >= 0:
                locals_[parameter.arg] = defaults[from_default]
            else:
                return self.unknown(node, frame, f"{name}() is missing {parameter.arg}")
        for parameter, default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True):
            if parameter.arg in keywords:
                locals_[parameter.arg] = keywords.pop(parameter.arg)
            elif default is not None:
                locals_[parameter.arg] = self.eval(default, defining)
            else:
                return self.unknown(node, frame, f"{name}() is missing {parameter.arg}")
        if spec.vararg is not None:
            locals_[spec.vararg.arg] = _V(tuple(positional[len(parameters) :]), None)
        elif len(positional) > len(parameters):
            return self.unknown(node, frame, f"{name}() is given too many arguments")
        if spec.kwarg is not None:
            locals_[spec.kwarg.arg] = _V(_Dict(dict(keywords)), None)
        elif keywords:
            return self.unknown(node, frame, f"{name}() has no parameter {next(iter(keywords))}")
        callee = dataclasses.replace(defining, locals=locals_)
        self.calls += 1
        try:
            self.block(function.node.body, callee, 0)
        except _Return as done:
            return done.value
        finally:
            self.calls -= 1
        return _V(None, _place(defining.file, function.node))

    def method(self, method: _Method, node: ast.Call, frame: _Frame) -> _V:
        owner = method.owner
        data = owner.data
        name = method.name
        place = _place(frame.file, node)
        if isinstance(data, _EnvReader):
            return self.env_call(data, name, node, frame)
        bound = self.arguments(node, frame)
        if bound is None:
            return _V(UNKNOWN, place, f"{_short(node)}'s arguments are unknown")
        args, keywords = bound
        if isinstance(data, _Dict):
            return self.dict_method(owner, data, name, args, keywords, node, frame)
        if isinstance(data, _List) and name in {"append", "extend"} and len(args) == 1:
            if name == "append":
                data.items.append(args[0])
            else:
                data.items.extend(self.iterate(args[0]) or [_V(UNKNOWN, place, "unknown")])
            return _V(None, place)
        if isinstance(data, str) and name in _STR_METHODS and not args:
            return _V(getattr(data, name)(), place, env=owner.env)
        if isinstance(data, str) and name in {"startswith", "endswith", "split"}:
            plain = [_plain(a) for a in args]
            if all(isinstance(p, str) for p in plain):
                result = getattr(data, name)(*plain)
                if isinstance(result, list):
                    return _V(tuple(_V(p, place, env=owner.env) for p in result), place)
                return _V(result, place, env=owner.env)
        return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan", owner.env)

    def dict_method(
        self,
        owner: _V,
        data: _Dict,
        name: str,
        args: list[_V],
        keywords: dict[str, _V],
        node: ast.AST,
        frame: _Frame,
    ) -> _V:
        place = _place(frame.file, node)
        if name == "update":
            for arg in args[:1]:
                self.update(owner, arg, node)
            self.update(owner, _V(_Dict(dict(keywords)), place), node)
            return _V(None, place)
        if name == "copy" and not args:
            return _V(_copy_dict(data), place, owner.because, owner.env)
        if name in {"get", "setdefault", "pop"} and args:
            key = args[0]
            default = args[1] if len(args) > 1 else _V(None, place)
            if not _hashable(key.data) or key.data is UNKNOWN or data.unknown:
                return _V(UNKNOWN, place, key.because or data.unknown)
            if key.data in data.items:
                return data.items.pop(key.data) if name == "pop" else data.items[key.data]
            if data.open and name == "setdefault" and isinstance(default.data, _Dict):
                # The key may be there with keys scan cannot see: what is written into the
                # result is known, the rest is not.
                data.items[key.data] = _V(_Dict(open=data.open), place)
                return data.items[key.data]
            if data.open:
                return _V(UNKNOWN, place, data.open)
            if name == "setdefault":
                data.items[key.data] = default
            return default
        if name in {"keys", "values", "items"} and not args:
            if data.open or data.unknown:
                return _V(UNKNOWN, place, data.open or data.unknown)
            if name == "keys":
                return _V(tuple(_V(k, place) for k in data.items), place)
            if name == "values":
                return _V(tuple(data.items.values()), place)
            return _V(tuple(_V((_V(k, place), v), place) for k, v in data.items.items()), place)
        return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan")

    def builtin(self, name: str, node: ast.Call, frame: _Frame) -> _V:
        place = _place(frame.file, node)
        bound = self.arguments(node, frame)
        if bound is None:
            return _V(UNKNOWN, place, f"{_short(node)}'s arguments are unknown")
        args, keywords = bound
        if name == "dict":
            result = _V(_Dict(), place)
            if args:
                source = args[0]
                if isinstance(source.data, _Dict):
                    self.update(result, _V(_copy_dict(source.data), place), node)
                else:
                    self.update(result, _V(UNKNOWN, place, source.because), node)
            self.update(result, _V(_Dict(dict(keywords)), place), node)
            return result
        if len(args) != 1 or keywords:
            return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan")
        return _convert(name, args[0], place)

    def env_call(self, reader: _EnvReader, cast: str, node: ast.Call, frame: _Frame) -> _V:
        """django-environ: ``env("X", default=...)``, ``env.bool("X", default=...)``; the default
        is returned as written (django-environ does not parse defaults)."""
        place = _place(frame.file, node)
        if cast in {"db", "db_url", "cache", "cache_url", "url"}:
            return self.url_config(node, frame, f"env.{cast}()")
        if cast and cast not in _ENV_CASTS and cast not in {"get_value"}:
            return _V(UNKNOWN, place, f"{_short(node)} is not evaluated by scan")
        # Env.__call__(var, cast=None, default=NOTSET): a second positional is the cast;
        # Env.bool(var, default=NOTSET): it is the default.
        variable, default = self.variable_and_default(node, frame, positional_default=bool(cast))
        if variable is None:
            return _V(UNKNOWN, place, f"{_short(node)}: the variable's name is unknown")
        if default is None:
            scheme = dict(reader.defaults)
            if variable in scheme:
                return dataclasses.replace(scheme[variable], env=variable)
            return _V(UNKNOWN, place, f"{variable} has no default in {_short(node)}", variable)
        return _V(default.data, place, default.because, variable)

    def variable_and_default(
        self, node: ast.Call, frame: _Frame, positional_default: bool
    ) -> tuple[str | None, _V | None]:
        variable = None
        if node.args:
            name = self.eval(node.args[0], frame)
            variable = name.data if isinstance(name.data, str) else None
        default_node = next((k.value for k in node.keywords if k.arg == "default"), None)
        if default_node is None and positional_default and len(node.args) >= 2:
            default_node = node.args[1]
        default = self.eval(default_node, frame) if default_node is not None else None
        return variable, default

    def external(self, function: _External, node: ast.Call, frame: _Frame) -> _V:
        name = function.name
        place = _place(frame.file, node)
        last = name.rpartition(".")[2]
        if name in _ENV_GET or (name.endswith("environ.get") and not function.bound):
            variable, default = self.variable_and_default(node, frame, positional_default=True)
            if variable is None:
                return _V(UNKNOWN, place, f"{_short(node)}: the variable's name is unknown")
            if default is None:
                if last == "setdefault":
                    return _V(UNKNOWN, place, f"{_short(node)} has no default", variable)
                return _V(None, place, env=variable)  # unset: get() gives None
            return _V(default.data, place, default.because, variable)
        if name in {"environ.Env", "environ.FileAwareEnv"} or (
            name == "Env" and not function.bound
        ):
            return _V(self.env_scheme(node, frame), place)
        if not function.bound and (name == "env" or name.startswith("env.")):
            return self.env_call(_EnvReader(), name.partition(".")[2], node, frame)
        if name in {"decouple.AutoConfig", "decouple.Config"}:
            return _V(_External("decouple.config"), place)  # config = AutoConfig(...)
        if (
            name in {"decouple.config", "config"}
            and node.args
            and not any(k.arg in {"conn_max_age", "conn_health_checks"} for k in node.keywords)
        ):
            return self.decouple(node, frame)
        if name in {"copy.deepcopy", "copy.copy", "deepcopy"} and len(node.args) == 1:
            value = self.eval(node.args[0], frame)
            if isinstance(value.data, _Dict | _List):
                copied = _Copier(self).value(value) if last == "deepcopy" else value
                if last == "copy" and isinstance(value.data, _Dict):
                    copied = _V(_copy_dict(value.data), value.place)
                return dataclasses.replace(copied, place=place)
            return value
        if name == "json.loads" and len(node.args) == 1:
            return _from_json(self.eval(node.args[0], frame), place)
        if last in _URL_CONFIGS and (
            name.startswith(("dj_database_url", "db_url")) or _database_keywords(node)
        ):
            return self.url_config(node, frame, f"{name}()")
        if not function.bound:
            return _V(UNKNOWN, place, f"{name}() is not defined in the project")
        return _V(UNKNOWN, place, f"{name}() is outside the project")

    def env_scheme(self, node: ast.Call, frame: _Frame) -> _EnvReader:
        defaults = []
        for keyword in node.keywords:
            value = self.eval(keyword.value, frame)
            if keyword.arg and isinstance(value.data, tuple) and len(value.data) == 2:
                defaults.append((keyword.arg, value.data[1]))
        return _EnvReader(tuple(defaults))

    def decouple(self, node: ast.Call, frame: _Frame) -> _V:
        """python-decouple's ``config("X", default=..., cast=bool)``: the cast applies to the
        default too."""
        place = _place(frame.file, node)
        variable, default = self.variable_and_default(node, frame, positional_default=True)
        if variable is None:
            return _V(UNKNOWN, place, f"{_short(node)}: the variable's name is unknown")
        if default is None:
            return _V(UNKNOWN, place, f"{variable} has no default in {_short(node)}", variable)
        cast_node = next((k.value for k in node.keywords if k.arg == "cast"), None)
        if cast_node is None:
            return _V(default.data, place, default.because, variable)
        cast = self.eval(cast_node, frame)
        if isinstance(cast.data, _Builtin) and cast.data.name in {"int", "float", "str", "bool"}:
            if cast.data.name == "bool" and isinstance(default.data, str):
                lowered = default.data.lower()
                if lowered in {"1", "yes", "y", "true", "on"}:
                    return _V(True, place, env=variable)
                if lowered in {"0", "no", "n", "false", "off", ""}:
                    return _V(False, place, env=variable)
                return _V(UNKNOWN, place, f"{default.data!r} is not a boolean", variable)
            return dataclasses.replace(_convert(cast.data.name, default, place), env=variable)
        return _V(UNKNOWN, place, f"{_short(cast_node)} is not evaluated by scan", variable)

    def url_config(self, node: ast.Call, frame: _Frame, what: str) -> _V:
        """``dj_database_url.config(conn_max_age=600, conn_health_checks=True)``: a database
        dict built from a URL scan cannot see, except what the keywords set."""
        result = _Dict(open=f"{what} reads the database URL, which scan does not run")
        for keyword_name, key in (
            ("conn_max_age", "CONN_MAX_AGE"),
            ("conn_health_checks", "CONN_HEALTH_CHECKS"),
        ):
            value_node = next((k.value for k in node.keywords if k.arg == keyword_name), None)
            if value_node is not None:
                result.items[key] = self.eval(value_node, frame)
        if "CONN_MAX_AGE" not in result.items:
            result.items["CONN_MAX_AGE"] = _V(0, _place(frame.file, node))
        return _V(result, _place(frame.file, node))


def _database_keywords(node: ast.Call) -> bool:
    return any(
        k.arg in {"conn_max_age", "conn_health_checks", "ssl_require", "engine"}
        for k in node.keywords
    )


def _with_env(value: _V, env: str | None) -> _V:
    return dataclasses.replace(value, env=env) if env and not value.env else value


def _names_test_run(container: _V, item: object) -> bool:
    data = container.data
    return (
        isinstance(data, _External)
        and data.name in {"sys.argv", "sys.modules"}
        and isinstance(item, str)
        and "test" in item
    )


def _within(index: int, sequence: list[_V] | tuple[_V, ...]) -> bool:
    return -len(sequence) <= index < len(sequence)


def _hashable(data: object) -> bool:
    return isinstance(data, str | int | float | bool) or data is None


def _copy_dict(data: _Dict) -> _Dict:
    copied = _Dict(dict(data.items), data.open)
    copied.unknown = data.unknown
    return copied


def _plain(value: _V) -> object:
    """Primitives and tuples of primitives, for comparisons; UNKNOWN otherwise."""
    data = value.data
    if _hashable(data):
        return data
    if isinstance(data, _List | tuple):
        items = data.items if isinstance(data, _List) else data
        plain = tuple(_plain(i) for i in items)
        return UNKNOWN if any(p is UNKNOWN for p in plain) else plain
    if isinstance(data, _Dict) and not data.open and not data.unknown:
        return _Keys(data.items)  # membership tests ask for its keys
    return UNKNOWN


class _Keys(tuple):
    """A dict's keys, for ``in``; comparing dicts by keys alone would be wrong."""


def _in(a: object, b: object) -> bool:
    return a in b  # type: ignore[operator]


_COMPARE: dict[type[ast.cmpop], Callable[[object, object], object]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,  # type: ignore[operator]
    ast.LtE: lambda a, b: a <= b,  # type: ignore[operator]
    ast.Gt: lambda a, b: a > b,  # type: ignore[operator]
    ast.GtE: lambda a, b: a >= b,  # type: ignore[operator]
    ast.In: _in,
    ast.NotIn: lambda a, b: not _in(a, b),
    ast.Is: lambda a, b: a is b or (a is None and b is None),
    ast.IsNot: lambda a, b: not (a is b or (a is None and b is None)),
}


def _arithmetic(op: ast.operator, a: object, b: object) -> object:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return UNKNOWN
    if isinstance(a, str) and isinstance(b, str) and isinstance(op, ast.Add):
        return a + b if len(a) + len(b) <= MAX_TEXT else UNKNOWN
    if isinstance(a, str) and isinstance(b, int) and isinstance(op, ast.Mult):
        return a * b if len(a) * b <= MAX_TEXT else UNKNOWN
    if not (isinstance(a, numbers) and isinstance(b, numbers)):
        return UNKNOWN
    result: object
    if isinstance(op, ast.Add):
        result = a + b
    elif isinstance(op, ast.Sub):
        result = a - b
    elif isinstance(op, ast.Mult):
        result = a * b
    elif isinstance(op, ast.Div):
        result = a / b
    elif isinstance(op, ast.FloorDiv):
        result = a // b
    elif isinstance(op, ast.Mod):
        result = a % b
    elif isinstance(op, ast.Pow) and abs(b) <= 64 and abs(a) <= 2**16:
        result = a**b
    else:
        return UNKNOWN
    if isinstance(result, int) and abs(result) > MAX_INT:
        return UNKNOWN
    if isinstance(result, float) and not math.isfinite(result):
        return UNKNOWN
    return result


def _convert(name: str, value: _V, place: Place) -> _V:
    """``int(os.environ.get("X", "0"))`` is 0, not the truthy string "0"."""
    data = value.data
    if data is UNKNOWN:
        return _V(UNKNOWN, place, value.because, value.env)
    try:
        if name == "bool":
            return _V(bool(data) if _hashable(data) else UNKNOWN, place, value.because, value.env)
        if name in {"int", "float"} and isinstance(data, str | int | float):
            converted: object = int(data) if name == "int" else float(data)
            if isinstance(converted, int) and abs(converted) > MAX_INT:
                converted = UNKNOWN
            return _V(converted, place, env=value.env)
        if name == "str" and _hashable(data):
            return _V(str(data), place, env=value.env)
    except (ValueError, OverflowError):
        return _V(UNKNOWN, place, f"{data!r} is not a number", value.env)
    if name in {"list", "tuple"} and isinstance(data, _List | tuple):
        items = list(data.items if isinstance(data, _List) else data)
        return _V(_List(items) if name == "list" else tuple(items), place, env=value.env)
    return _V(UNKNOWN, place, f"{name}() of this value is not evaluated by scan", value.env)


def _from_json(value: _V, place: Place) -> _V:
    if not isinstance(value.data, str):
        return _V(UNKNOWN, place, value.because or "json.loads of an unknown text", value.env)
    try:
        loaded = json.loads(value.data)
    except ValueError:
        return _V(UNKNOWN, place, "the JSON does not parse", value.env)

    def build(item: object) -> _V:
        if isinstance(item, dict):
            return _V(_Dict({k: build(v) for k, v in item.items()}), place, env=value.env)
        if isinstance(item, list):
            return _V(_List([build(v) for v in item]), place, env=value.env)
        return _V(item, place, env=value.env)

    return build(loaded)


class _Copier:
    """Copies of the mutable values (dicts, lists), sharing between them kept; the rest is
    immutable and shared."""

    def __init__(self, evaluator: _Evaluator) -> None:
        self.evaluator = evaluator
        self.copies: dict[int, _Dict | _List] = {}

    def scopes(self, scopes: list[dict[str, _V]]) -> list[dict[str, _V]]:
        return [{name: self.value(value) for name, value in scope.items()} for scope in scopes]

    def value(self, value: _V) -> _V:
        data = value.data
        copied: object
        if isinstance(data, _Dict | _List):
            copied = self.copies.get(id(data))
            if copied is None:
                self.evaluator.step()
                if isinstance(data, _Dict):
                    copied = self.copies[id(data)] = _Dict(open=data.open)
                    copied.unknown = data.unknown
                    copied.items = {k: self.value(v) for k, v in data.items.items()}
                else:
                    copied = self.copies[id(data)] = _List([])
                    copied.items = [self.value(v) for v in data.items]
        elif isinstance(data, tuple):
            copied = tuple(self.value(v) for v in data)
        elif isinstance(data, _Method):
            copied = _Method(self.value(data.owner), data.name)
        else:
            return value
        return _V(copied, value.place, value.because, value.env)


class _Merger:
    """Two branches' values as one: what they agree on is kept, the rest is unknown."""

    def __init__(self, evaluator: _Evaluator, because: str) -> None:
        self.evaluator = evaluator
        self.because = because
        self.memo: dict[tuple[int, int], _Dict] = {}

    def scope(self, a: dict[str, _V], b: dict[str, _V]) -> dict[str, _V]:
        merged: dict[str, _V] = {}
        for name in [*a, *(n for n in b if n not in a)]:
            if name in a and name in b:
                merged[name] = self.value(a[name], b[name])
            else:
                present = a.get(name) or b[name]
                merged[name] = _V(UNKNOWN, present.place, self.because, present.env)
        return merged

    def value(self, a: _V, b: _V) -> _V:
        self.evaluator.step()
        if a is b:
            return a
        x, y = a.data, b.data
        env = a.env or b.env
        if isinstance(x, _Dict) and isinstance(y, _Dict):
            return _V(self.dict(x, y), a.place, env=env)
        if isinstance(x, _List) and isinstance(y, _List) and len(x.items) == len(y.items):
            items = [self.value(i, j) for i, j in zip(x.items, y.items, strict=True)]
            return _V(_List(items), a.place, env=env)
        if isinstance(x, tuple) and isinstance(y, tuple) and len(x) == len(y):
            return _V(tuple(self.value(i, j) for i, j in zip(x, y, strict=True)), a.place, env=env)
        if _hashable(x) and type(x) is type(y) and x == y:
            return a
        if x == y and not isinstance(x, Unknown):
            return a  # the same function, module, or external name
        return _V(UNKNOWN, a.place, self.because, env)

    def dict(self, x: _Dict, y: _Dict) -> _Dict:
        key = (id(x), id(y))
        if key in self.memo:
            return self.memo[key]
        merged = _Dict(open=x.open or y.open)
        merged.unknown = x.unknown or y.unknown
        self.memo[key] = merged
        for name in [*x.items, *(n for n in y.items if n not in x.items)]:
            if name in x.items and name in y.items:
                merged.items[name] = self.value(x.items[name], y.items[name])
            else:
                present = x.items.get(name) or y.items[name]
                merged.items[name] = _V(UNKNOWN, present.place, self.because, present.env)
        return merged


class _Freezer:
    def __init__(self) -> None:
        self.done: dict[int, Dict] = {}
        self.active: set[int] = set()

    def freeze(self, value: _V, depth: int = 0) -> Value:
        data = value.data
        env = value.env
        if depth > EXPRESSION_DEPTH:
            return Value(UNKNOWN, value.place, "nested too deeply", env)
        if isinstance(data, _Dict):
            if data.unknown:
                return Value(UNKNOWN, value.place, data.unknown, env)
            if id(data) in self.active:
                return Value(UNKNOWN, value.place, "a dict that contains itself", env)
            if id(data) not in self.done:
                self.active.add(id(data))
                items = {
                    k: self.freeze(v, depth + 1)
                    for k, v in data.items.items()
                    if isinstance(k, str)
                }
                self.active.discard(id(data))
                self.done[id(data)] = Dict(items, data.open)
            return Value(self.done[id(data)], value.place, "", env)
        if isinstance(data, _List | tuple):
            elements = data.items if isinstance(data, _List) else data
            if id(elements) in self.active:
                return Value(UNKNOWN, value.place, "a list that contains itself", env)
            self.active.add(id(elements))
            frozen = tuple(self.freeze(i, depth + 1) for i in elements)
            self.active.discard(id(elements))
            return Value(frozen, value.place, "", env)
        if _hashable(data):
            return Value(data, value.place, "", env)
        if data is UNKNOWN:
            return Value(UNKNOWN, value.place, value.because, env)
        if isinstance(data, _External):
            because = (
                f"{data.name} is outside the project"
                if data.bound
                else f"{data.name} is not defined in the project"
            )
            return Value(UNKNOWN, value.place, because, env)
        kind = {
            _Function: "a function",
            _ProjectModule: "a module",
            _EnvReader: "an environment reader",
        }.get(type(data), "not a value scan reads")
        return Value(UNKNOWN, value.place, kind, env)
