"""Subjects: the built-in modes, the project's own wrappers and its own tasks, as one list.

A wrapper is named ``MODULE:ATTR`` (ATTR is a decorator taking an async function) or
``MODULE:ATTR()`` (ATTR is a factory called with no arguments that returns such a decorator). The
decorator may return a plain callable or a Celery task; a task is run in-process through Celery's
own tracer, as a solo worker runs it.

A task (``--task``, see :mod:`pooldoctor.core.project_tasks`) is the project's own task, run through
the same tracer with the arguments given.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import traceback
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pooldoctor.core.probes import all_modes
from pooldoctor.errors import PooldoctorError, ProjectError, UsageError

_WRAPPER = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)(?P<call>\(\))?$")


@dataclasses.dataclass(frozen=True)
class Subject:
    name: str
    """The mode's name, the wrapper exactly as the user gave it, or the task's path (followed by
    ``via WRAPPER`` for an async function run through a wrapper)."""
    kind: str
    """``mode``, ``wrapper`` or ``task``."""
    target: str | None = None
    """A task's path, as the user gave it."""
    args: tuple[Any, ...] = dataclasses.field(default=(), compare=False)
    """A task's positional arguments (``--args``)."""
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """A task's keyword arguments (``--kwargs``)."""
    wrapper: str | None = None
    """The ``--wrapper`` a task that is a bare async function runs through."""

    def wire(self) -> dict[str, Any]:
        """The subject as the runner's spec carries it."""
        if self.kind != "task":
            return {"kind": self.kind, "name": self.name}
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


def load_wrapper(spec: str) -> Callable[[Any], Any]:
    """Import the decorator a ``--wrapper`` names (calling the factory for ``ATTR()``)."""
    match = _match(spec)
    module_name, attr, call = match["module"], match["attr"], match["call"]
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
    if call:
        if not callable(obj):
            raise ProjectError(f"--wrapper {spec}: {attr} is not callable, so it cannot be called")
        try:
            obj = obj()
        except Exception as exc:
            raise ProjectError(
                f"--wrapper {spec}: calling {attr}() raised {describe_exception(exc)}",
                "a factory must take no arguments and return a decorator",
            ) from exc
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
    wrapped = decorate(spec, decorator, task)
    return celery_runner(wrapped) if is_celery_task(wrapped) else wrapped


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
    return wrapped


def is_celery_task(obj: Any) -> bool:
    try:
        from celery.app.task import Task
    except ImportError:  # pragma: no cover - celery is a dependency
        return False
    return isinstance(obj, Task)


def celery_runner(task: Any) -> Callable[..., Any]:
    """Run a Celery task in this thread through Celery's tracer, as a solo worker does; the
    returned function takes the task's arguments.

    ``task.apply()`` would mark the request eager, and Celery's Django fix-up skips its database
    cleanup for eager tasks; a worker's tracer runs the task with ``is_eager=False`` and the
    fix-up's ``task_prerun``/``task_postrun`` handlers, so that is what runs here. Results are not
    stored (``ignore_result``), so no result backend is touched.
    """
    from celery import states
    from celery.app.trace import build_tracer

    install_worker_fixup(task.app)
    tracer = build_tracer(task.name, task, app=task.app, eager=False, propagate=False)

    def run(*args: Any, **kwargs: Any) -> Any:
        task_id = uuid.uuid4().hex
        request = {"id": task_id, "ignore_result": True, "delivery_info": {"is_eager": False}}
        retval, info, _, _ = tracer(task_id, args, kwargs, request)
        if info is not None and info.state in (states.FAILURE, states.RETRY):
            raise info.retval
        return retval

    run.celery_task = True  # type: ignore[attr-defined]
    return run


def install_worker_fixup(app: Any) -> bool:
    """Install Celery's Django worker fix-up if the app has the Django fix-up, as ``worker_init``
    would. Returns whether it did."""
    for fixup in getattr(app, "_fixups", ()):
        if type(fixup).__name__ == "DjangoFixup":
            fixup.worker_fixup.install()
            return True
    return False


def describe_exception(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"
