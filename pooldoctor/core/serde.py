"""One generic conversion between the frozen dataclasses of :mod:`pooldoctor.core.model` and the
plain values of JSON: the wire format between processes, the JSON report, and ``pooldoctor
report``'s way back in. No class has a hand-written mirror: :func:`from_dict` reads the field
types.

- :func:`to_dict` writes every field by its name (enums as their values, tuples as lists, mapping
  keys as strings), then the read-only properties a class lists in ``JSON_EXTRAS`` (derived
  numbers the JSON contract documents, such as a subject's ``tasks``), which loading ignores.
- :func:`from_dict` builds the class back from its field types: nested dataclasses, enums,
  ``tuple[X, ...]``, ``Mapping[int, X]`` (JSON keys are strings), ``X | None``. A key missing from
  the data takes the field's default, so a report saved before a field existed still loads; a
  field without a default that is missing is a :class:`KeyError` naming it.
- A field renamed in the model names its old JSON key in its metadata (:func:`was`): loading
  accepts either.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def was(old: str, **field_options: Any) -> Any:
    """A dataclass field whose JSON key used to be ``old`` (reports saved then still load)."""
    return dataclasses.field(metadata={"was": old}, **field_options)


def to_dict(value: Any) -> Any:
    """A JSON-ready copy of a dataclass tree."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in getattr(value, "JSON_EXTRAS", ()):
            out[name] = to_dict(getattr(value, name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_dict(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls`` built from what :func:`to_dict` wrote (or an older report's keys)."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init:
            continue
        key = field.name if field.name in data else field.metadata.get("was", field.name)
        if key in data:
            values[field.name] = _convert(hints[field.name], data[key])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise KeyError(field.name)
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A class's field types, resolved once (the model's annotations are strings)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    return _HINTS[cls]


def _convert(hint: Any, value: Any) -> Any:
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value)
        for option in options:  # a plain union: the first type the value already is
            base = typing.get_origin(option) or option
            if isinstance(base, type) and isinstance(value, base):
                return _convert(option, value)
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_convert(args[0], v) for v in value]
    if origin in (dict, Mapping) or origin is typing.Mapping or _is_mapping(origin):
        key_type, value_type = args or (Any, Any)
        return {_key(key_type, k): _convert(value_type, v) for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _is_mapping(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _key(hint: Any, key: str) -> Any:
    return int(key) if hint is int else key
