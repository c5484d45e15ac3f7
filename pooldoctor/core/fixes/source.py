"""Where a wrapper's source is: the module-level ``def`` that holds the code running the task.

A decorator ``MODULE:ATTR`` is a module-level function; for a factory ``MODULE:ATTR()`` the
decorator it returns is nested in the factory, so the factory's ``def`` is the one to patch. Only
a plain ``def`` in a file under the project directory can be patched: a lambda, a class, a
callable object, a ``functools.partial``, a C or built-in function, or code in an installed
library cannot, and the reason says which.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import types
from pathlib import Path
from typing import Any

from pooldoctor.core.fixes import CannotPatch


@dataclasses.dataclass(frozen=True)
class Source:
    """A module-level function's definition, as the file has it."""

    module: str
    """The module's name (``mysite.celeryapp``)."""
    function: str
    """The function's name in the module."""
    path: Path
    """The file, absolute."""
    relative: str
    """The file relative to the project directory (POSIX), as the diff names it."""
    first_line: int
    """The line of the ``def`` (or of its first decorator), 1-based."""
    text: str
    """The definition's lines, decorators included."""
    namespace: dict[str, Any] = dataclasses.field(repr=False, compare=False)
    """The module's globals (read, never written)."""


def describe(obj: Any) -> str | None:
    """Why ``obj`` is not a function whose source can be patched, or None when it is one."""
    if isinstance(obj, type):
        return f"it is the class {obj.__qualname__}, not a function"
    if isinstance(obj, functools.partial):
        return "it is a functools.partial, not a function defined in the project"
    if isinstance(obj, types.BuiltinFunctionType | types.MethodWrapperType):
        return "it is a built-in or C function, with no Python source"
    if isinstance(obj, types.MethodType):
        return f"it is the method {obj.__func__.__qualname__}, not a module-level function"
    if not isinstance(obj, types.FunctionType):
        return f"it is a callable object (an instance of {type(obj).__qualname__}), not a function"
    if obj.__name__ == "<lambda>":
        return "it is a lambda; pooldoctor rewrites a def"
    return None


def locate(obj: Any, root: str | Path) -> Source:
    """The module-level definition holding ``obj`` (a function, or a function nested in one)."""
    reason = describe(obj)
    if reason is not None:
        raise CannotPatch(reason)
    module = sys.modules.get(obj.__module__ or "")
    if module is None:
        raise CannotPatch(f"its module {obj.__module__!r} is not loaded")
    top, _, rest = obj.__qualname__.partition(".")
    namespace = vars(module)
    holder = namespace.get(top)
    if rest and not rest.startswith("<locals>."):
        raise CannotPatch(f"it is defined in the class {top}, not at module level")
    if not isinstance(holder, types.FunctionType) or holder.__name__ != top:
        raise CannotPatch(f"{obj.__module__}.{top} is not the function that defines it")
    return of_function(holder, root)


def of_function(function: types.FunctionType, root: str | Path) -> Source:
    """The source of a module-level function, checked to be in a file under ``root``."""
    where = f"{function.__module__}.{function.__qualname__}"
    try:
        filename = inspect.getsourcefile(function)
        lines, first = inspect.getsourcelines(function)
    except (OSError, TypeError) as exc:
        raise CannotPatch(f"the source of {where} could not be found ({exc})") from None
    if filename is None:
        raise CannotPatch(f"the source of {where} could not be found")
    path = Path(filename).resolve()
    base = Path(root).resolve()
    if not path.is_relative_to(base):
        raise CannotPatch(f"{where} is defined in {path}, outside the project directory {base}")
    text = "".join(lines)
    if text[:1].isspace():
        raise CannotPatch(f"{where} is not defined at the top level of its file")
    return Source(
        module=function.__module__,
        function=function.__name__,
        path=path,
        relative=path.relative_to(base).as_posix(),
        first_line=first,
        text=text,
        namespace=vars(sys.modules[function.__module__]),
    )


def helper(namespace: dict[str, Any], name: str, module: str) -> types.FunctionType | None:
    """A module-level function of ``module`` called by name from a wrapper (for a decorator that
    hands the work to a helper, as ``mysite.celeryapp:async_task()`` does), or None."""
    found = namespace.get(name)
    if isinstance(found, types.FunctionType) and found.__module__ == module:
        return found
    return None
