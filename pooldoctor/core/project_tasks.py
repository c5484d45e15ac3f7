"""The project's own tasks (``check --task``): finding them, checking them, running them.

A task is named ``MODULE.ATTR`` (or ``MODULE:ATTR``): a host's task (a Celery task, run through
Celery's tracer as a solo worker runs it) or a plain sync callable (the in-process host: called),
with the given arguments. An ``async def`` that nothing wraps is run through each ``--wrapper``;
without one it is refused, because calling it would only create a coroutine. A task its host's
worker would never run (an ``async def`` under ``@app.task``) is refused. Every check here runs in
the parent before any subject process starts, so a wrong path or arguments that cannot bind fail
in a second.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pooldoctor.core.subjects import (
    Subject,
    decorate,
    describe_exception,
    load_wrapper,
    resolve_attribute,
)
from pooldoctor.errors import UsageError
from pooldoctor.hosts import host_for
from pooldoctor.hosts.base import Host

_TASK = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?$")

TASK_EXAMPLE = "for example --task mysite.tasks.refresh_prices"
IN_PROCESS = "inprocess"
# What to do about a task its host refuses: an async function that nothing wraps (in process), or
# a task that the host's worker would never await.
WRAP_TIP = ("name the task the project's decorator made from it, or add --wrapper MODULE:ATTR to "
            "run it through that decorator")  # fmt: skip
AWAIT_TIP = "decorate it with the project's async task decorator; scan reports this as PD306"


def parse_arguments(args: str | None, kwargs: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``--args`` (a JSON list) and ``--kwargs`` (a JSON object) as Python values."""
    return (
        tuple(_json_option("--args", args, list, '[42, "EUR"]', "list")),
        dict(_json_option("--kwargs", kwargs, dict, '{"force": true}', "object")),
    )


def _json_option(option: str, text: str | None, kind: type, example: str, name: str) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option} {text!r} is not JSON: {exc}", f"for example {option} '{example}'"
        ) from exc
    if not isinstance(value, kind):
        raise UsageError(
            f"{option} must be a JSON {name}, not {_json_type(value)}",
            f"for example {option} '{example}'",
        )
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def parse_task(path: str) -> str:
    """Check a ``--task`` path's shape (nothing is imported yet)."""
    if not _TASK.match(path) or ("." not in path and ":" not in path):
        raise UsageError(f"--task {path!r} is not a dotted path to a task", TASK_EXAMPLE)
    return path


def load_task(path: str) -> Any:
    """Import the object a ``--task`` path names (Django must be set up: tasks import models)."""
    parse_task(path)
    if ":" in path:
        module_name, _, rest = path.partition(":")
        return _attribute(path, _import_task_module(path, module_name), module_name, rest)
    parts = path.split(".")
    missing: str | None = None
    for end in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:end])
        try:
            module = _import_task_module(path, module_name)
        except ModuleNotFoundError:
            missing = module_name  # the shortest missing one is what to fix
            continue
        if missing is not None and not hasattr(module, parts[end]):
            break
        return _attribute(path, module, module_name, ".".join(parts[end:]))
    raise UsageError(
        f"--task {path}: no module named {missing or parts[0]!r}",
        "check the path; the project directory and --pythonpath are on sys.path",
    )


def _import_task_module(path: str, module_name: str) -> Any:
    """The module, ModuleNotFoundError when it does not exist, a UsageError when it fails."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only this module (or a package above it) missing means "no such module"; a missing
        # import inside it is the module failing.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            if ":" in path:
                raise UsageError(
                    f"--task {path}: no module named {module_name!r}",
                    "check the path; the project directory and --pythonpath are on sys.path",
                ) from exc
            raise
        raise UsageError(
            f"--task {path}: importing {module_name!r} raised {describe_exception(exc)}",
            "fix the import in that module (run with --debug for the traceback)",
        ) from exc
    except Exception as exc:
        raise UsageError(
            f"--task {path}: importing {module_name!r} raised {describe_exception(exc)}",
            "fix the error in that module (run with --debug for the traceback)",
        ) from exc


def _attribute(path: str, obj: Any, module_name: str, dotted: str) -> Any:
    return resolve_attribute(obj, dotted, f"--task {path}", module_name, UsageError)


def resolve_task(
    path: str, args: Sequence[Any], kwargs: Mapping[str, Any], wrappers: Sequence[str]
) -> list[Subject]:
    """The subjects a ``--task`` makes, each checked to be runnable with these arguments.

    A host's task or a sync callable is one subject; an async function that nothing wraps is one
    subject per ``--wrapper`` (decorated with it, as the project would), and an error without one.
    """
    obj = load_task(path)

    def subject(name: str, wrapper: str | None = None) -> Subject:
        return Subject(name, "task", path, tuple(args), dict(kwargs), wrapper)

    # A host's task object need not be callable (Django's Task is run through its backend).
    if inspect.isclass(obj) or not (callable(obj) or _hosted(obj)):
        what = "class" if inspect.isclass(obj) else type(obj).__name__
        raise UsageError(
            f"--task {path} is a {what}, not a task or a function",
            "name a Celery task, or a sync function that runs the async code",
        )
    host = host_for(obj)
    reason = host.refusal(obj)
    if reason is not None and host.name == IN_PROCESS and wrappers:
        # A bare async function: run it through each wrapper, as the project decorates it.
        subjects = []
        for spec in wrappers:
            wrapped = decorate(spec, load_wrapper(spec), obj)
            _check_arguments(path, host_for(wrapped).signature_target(wrapped), args, kwargs)
            subjects.append(subject(f"{path} via {spec}", spec))
        return subjects
    if reason is not None:
        tip = WRAP_TIP if host.name == IN_PROCESS else AWAIT_TIP
        raise UsageError(f"--task {path} is {reason}", tip)
    _check_arguments(path, host.signature_target(obj), args, kwargs)
    return [subject(path)]


def _hosted(obj: Any) -> bool:
    try:
        return host_for(obj).name != IN_PROCESS
    except LookupError:
        return False


def load_subject_task(spec: Mapping[str, Any]) -> Any:
    """The task a ``task`` subject's spec names, decorated with its ``--wrapper`` for a bare
    async function, as the project decorates it."""
    obj = load_task(spec["name"])
    wrapper = spec.get("wrapper")
    return obj if wrapper is None else decorate(wrapper, load_wrapper(wrapper), obj)


def task_runner(spec: Mapping[str, Any]) -> tuple[Host, Callable[[str], Any]]:
    """In a subject process: the host that runs the task a ``task`` subject's spec names, and
    the task, ready to run once per call with the spec's arguments (the probe's kind argument is
    ignored)."""
    obj = load_subject_task(spec)
    host = host_for(obj)
    call = host.runner(obj)
    args, kwargs = tuple(spec.get("args", ())), dict(spec.get("kwargs", {}))

    def run(kind: str) -> Any:
        return call(*args, **kwargs)

    return host, run


def _check_arguments(path: str, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Arguments that cannot bind would fail every run the same way: say so before running."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension)
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        given = f"--args '{json.dumps(list(args))}' --kwargs '{json.dumps(dict(kwargs))}'"
        raise UsageError(
            f"--task {path}{signature} cannot be called with {given}: {exc}",
            "pass the task's arguments as a JSON list (--args) and object (--kwargs)",
        ) from exc
