"""Load a patched wrapper in a subject process, leaving the project's module as it is.

Only the rewritten definition is executed, in a copy of its module's globals with the imports
the rewrite needs: re-running the whole module would re-run its side effects (a Celery app
created twice, signals connected twice). The wrapper named on the command line is then looked up
as usual, but against the copy: the rewritten function itself, or a function of the same module
(a factory, a decorator that calls the rewritten helper) re-bound to the copy's globals so it
calls the rewritten code.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any

from pooldoctor.core.subjects import call_factory, parse_spec, resolve_attribute
from pooldoctor.errors import ProjectError


def load_patched(patch: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The decorator ``patch["wrapper"]`` names, with ``patch["function"]`` replaced by
    ``patch["source"]`` (compiled as lines ``patch["first_line"]``... of ``patch["filename"]``,
    so a leak site in it names the line of the patched file)."""
    spec = patch["wrapper"]
    module_name, attr, call = parse_spec(spec)
    module = importlib.import_module(module_name)
    original = vars(module)
    namespace = dict(original)
    for statement in patch["imports"]:
        exec(statement, namespace)  # "from asgiref.sync import ...", built by pooldoctor
    padding = "\n" * (patch["first_line"] - 1)
    code = compile(padding + patch["source"], patch["filename"], "exec")
    exec(code, namespace)  # the project's own definition, rewritten
    replaced = original.get(patch["function"])
    obj = resolve_attribute(module, attr, f"--wrapper {spec}", module_name, ProjectError)
    if obj is replaced:
        obj = namespace[patch["function"]]
    elif isinstance(obj, types.FunctionType) and obj.__globals__ is original:
        obj = rebind(obj, namespace)
    return call_factory(spec, attr, obj) if call else obj


def rebind(function: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    """The same function (code, defaults, closure) reading its globals from ``namespace``."""
    bound = types.FunctionType(
        function.__code__,
        namespace,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    bound.__kwdefaults__ = function.__kwdefaults__
    bound.__qualname__ = function.__qualname__
    bound.__dict__.update(function.__dict__)
    return bound
