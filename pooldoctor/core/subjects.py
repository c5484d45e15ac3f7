"""Subjects: the built-in modes, the project's own wrappers and its own tasks, as one list.

A wrapper is named ``MODULE:ATTR`` (ATTR is a decorator taking an async function) or
``MODULE:ATTR()`` (ATTR is a factory called with no arguments that returns such a decorator). The
decorator may return a plain callable or a task of a host (a Celery task); the host that owns what
it returns runs it in-process, as its worker would (Celery's own tracer, as a solo worker).

A task (``--task``, see :mod:`pooldoctor.core.project_tasks`) is the project's own task, run by
its host in the same way with the arguments given.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from pooldoctor.core.probes import all_modes, get_mode
from pooldoctor.errors import PooldoctorError, ProjectError, UsageError
from pooldoctor.hosts import host_for
from pooldoctor.hosts.base import Host

_WRAPPER = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)(?P<call>\(\))?$")


@dataclasses.dataclass(frozen=True)
class Subject:
    name: str
    """The mode's name, the wrapper exactly as the user gave it, or the task's path (followed by
    ``via WRAPPER`` for an async function run through a wrapper)."""
    kind: str
    """``mode``, ``wrapper``, ``task`` or ``url``."""
    target: str | None = None
    """A task's path, as the user gave it."""
    args: tuple[Any, ...] = dataclasses.field(default=(), compare=False)
    """A task's positional arguments (``--args``)."""
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """A task's keyword arguments (``--kwargs``)."""
    wrapper: str | None = None
    """The ``--wrapper`` a task that is a bare async function runs through."""
    patch: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)
    """A wrapper measured with its source rewritten (a fix's proof run): what
    :func:`pooldoctor.core.fixes.load.load_patched` loads instead of the project's definition."""

    request: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)
    """A ``url``'s request (:class:`pooldoctor.hosts.web.common.Request`, as sent)."""

    @property
    def web(self) -> bool:
        """Whether the subject's tasks are requests through the project's application."""
        if self.kind == "mode":
            return get_mode(self.name).request
        return self.kind == "url"

    def wire(self) -> dict[str, Any]:
        """The subject as the runner's spec carries it."""
        if self.kind == "url":
            return {"kind": "url", "name": self.name, "request": dict(self.request or {})}
        if self.kind != "task":
            plain: dict[str, Any] = {"kind": self.kind, "name": self.name}
            return plain if self.patch is None else {**plain, "patch": dict(self.patch)}
        wire: dict[str, Any] = {
            "kind": "task",
            "name": self.target,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
        }
        if self.wrapper is not None:
            wire["wrapper"] = self.wrapper
        return wire


def _match(spec: str) -> re.Match[str]:
    match = _WRAPPER.match(spec)
    if match is None:
        raise UsageError(
            f"--wrapper {spec!r} is not MODULE:ATTR or MODULE:ATTR()",
            "for example --wrapper mysite.celeryapp:async_task or mysite.celeryapp:async_task()",
        )
    return match


def parse_wrapper(spec: str) -> Subject:
    _match(spec)
    return Subject(name=spec, kind="wrapper")


def select_modes(names: list[str] | None) -> list[Subject]:
    known = [m.name for m in all_modes()]
    if names is None:
        return [Subject(name=n, kind="mode") for n in known]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"unknown mode {name!r}", f"{hint}see pooldoctor check --list-modes")
    return [Subject(name=n, kind="mode") for n in known if n in names]


def parse_spec(spec: str) -> tuple[str, str, bool]:
    """``(module, attribute path, whether to call it)`` of ``MODULE:ATTR`` or ``MODULE:ATTR()``."""
    match = _match(spec)
    return match["module"], match["attr"], bool(match["call"])


def load_wrapper(spec: str) -> Callable[[Any], Any]:
    """Import the decorator a ``--wrapper`` names (calling the factory for ``ATTR()``)."""
    module_name, attr, call = parse_spec(spec)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectError(
            f"--wrapper {spec}: cannot import module {module_name!r}: {exc}",
            "check the module path; the project directory and --pythonpath are on sys.path",
        ) from exc
    except Exception as exc:
        raise ProjectError(
            f"--wrapper {spec}: importing {module_name!r} raised {describe_exception(exc)}",
            "fix the error in that module (run with --debug for the traceback)",
        ) from exc
    obj = resolve_attribute(obj, attr, f"--wrapper {spec}", module_name, ProjectError)
    return call_factory(spec, attr, obj) if call else checked_decorator(spec, attr, obj)


def call_factory(spec: str, attr: str, factory: Any) -> Callable[[Any], Any]:
    """The decorator a ``MODULE:ATTR()`` factory returns."""
    if not callable(factory):
        raise ProjectError(f"--wrapper {spec}: {attr} is not callable, so it cannot be called")
    try:
        obj = factory()
    except Exception as exc:
        raise ProjectError(
            f"--wrapper {spec}: calling {attr}() raised {describe_exception(exc)}",
            "a factory must take no arguments and return a decorator",
        ) from exc
    return checked_decorator(spec, attr, obj)


def checked_decorator(spec: str, attr: str, obj: Any) -> Callable[[Any], Any]:
    if not callable(obj):
        raise ProjectError(
            f"--wrapper {spec}: {attr} is a {type(obj).__name__}, not a decorator",
            "name a function that takes an async function (or a factory, with '()')",
        )
    return obj


def resolve_attribute(
    obj: Any, dotted: str, option: str, module_name: str, error: type[PooldoctorError]
) -> Any:
    """``obj.a.b`` for ``dotted`` "a.b"; a missing part is ``error`` with a close match."""
    for part in dotted.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "check the attribute name"
            raise error(f"{option}: {module_name!r} has no attribute {part!r}", hint)
        obj = getattr(obj, part)
    return obj


def apply_wrapper(spec: str, decorator: Callable[[Any], Any], task: Any) -> Callable[[str], Any]:
    """Decorate the probe task with the project's wrapper and return something to call per task."""
    return wrapped_runner(spec, decorator, task)[1]


def wrapped_runner(
    spec: str, decorator: Callable[[Any], Any], task: Any
) -> tuple[Host, Callable[[str], Any]]:
    """The host that runs the probe task decorated with the project's wrapper, and its runner."""
    wrapped = decorate(spec, decorator, task)
    host = host_for(wrapped)
    return host, host.runner(wrapped)


def decorate(spec: str, decorator: Callable[[Any], Any], task: Any) -> Any:
    """Apply the wrapper to the probe task and check that the result can be run."""
    try:
        wrapped = decorator(task)
    except Exception as exc:
        raise ProjectError(
            f"--wrapper {spec}: decorating an async function raised {describe_exception(exc)}",
            "the wrapper must accept an async function as its only argument",
        ) from exc
    if not callable(wrapped):
        raise ProjectError(
            f"--wrapper {spec} returned a {type(wrapped).__name__}, which cannot be called",
            "the decorator must return a function or a Celery task",
        )
    try:
        host_for(wrapped)
    except LookupError:  # a class: no worker runs one as a task
        raise ProjectError(
            f"--wrapper {spec} returned the class {wrapped.__name__}, not something to run",
            "the decorator must return a function or a Celery task",
        ) from None
    return wrapped


def describe_exception(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"
