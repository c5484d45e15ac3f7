"""A Celery worker running the threads, gevent or eventlet pool with a Django database pool.

Celery's Django fix-up resets the database pool only for prefork workers: ``_close_database``
calls ``conn.close_pool()`` when ``_is_prefork()`` (celery/fixups/django.py, DjangoWorkerFixup,
Celery 5.6+; older releases never call it). In a threads/gevent/eventlet worker every task runs in
one process and shares that process's single pool, which nothing resets between tasks: a
``--concurrency`` above the pool's ``max_size`` queues tasks on the pool, and a connection a task
fails to return is lost for the worker's lifetime.

Commands are read from the worker facts (:mod:`pooldoctor.scan.deployment`): every deployment file
that starts a Celery worker (Procfile, heroku.yml, Dockerfile, compose, Kubernetes manifests,
supervisord, systemd, shell scripts, Makefiles) and its ``-P``/``--pool`` and ``--concurrency``.
Settings (``worker_pool = "threads"``) are read from the Python modules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from pooldoctor.core.model import Severity
from pooldoctor.scan.checks import Hit, register
from pooldoctor.scan.databases import literal
from pooldoctor.scan.deployment import Workers
from pooldoctor.scan.facts import Facts
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import last_name

FIX = (
    "run tasks that use the database on the prefork pool (the default), or keep --concurrency "
    'at or below OPTIONS["pool"]["max_size"] and close connections when each task ends'
)
SETTING_NAMES = frozenset({"worker_pool", "CELERY_WORKER_POOL", "CELERYD_POOL"})
_KIND = re.compile(r"\b(threads?|gevent|eventlet)\b")
THREADED = frozenset({"threads", "gevent", "eventlet"})
# -P threads, -Pgevent, --pool=eventlet, --pool gevent, "--pool", "gevent" (an exec-form CMD)
_OPTION = re.compile(r"""(?<![\w-])(?:-P|--pool(?![\w-]))[\s=",']*(threads|gevent|eventlet)\b""")
_COMMENT = re.compile(r"^\s*[#;].*|\s#.*")


NEEDS = ("thread", "gevent", "eventlet")


@register(__name__, "PD312", Severity.WARNING, FIX)
def check(source: SourceFile, facts: Facts) -> Iterator[Hit]:
    if not facts.pool_may_be_on or not any(
        k in source.text for k in ("thread", "gevent", "eventlet")
    ):
        return
    if source.is_python:
        if source.tree is not None:
            for hit in _python_settings(source.tree):
                yield Hit(hit.line, hit.column, facts.pool_question + hit.message)
    else:
        commands = [w for w in facts.workers if w.file == source.relative]
        starts = sorted({w.line for w in commands})
        for entry in commands:
            if entry.program.pool in THREADED:
                end = next((n for n in starts if n > entry.line), len(source.lines) + 1)
                line, column = _option_at(source.lines, entry.line, end)
                yield Hit(line, column, facts.pool_question + _message(entry.program.pool, entry))


def _option_at(lines: list[str], start: int, end: int) -> tuple[int, int]:
    """Where the command's ``-P``/``--pool`` is (the command may go on over the next lines),
    else where the command starts."""
    for number in range(start, min(end, start + 50)):
        match = _OPTION.search(_COMMENT.sub("", lines[number - 1]))
        if match:
            return number, match.start() + 1
    text = lines[start - 1]
    key = text.lstrip().removeprefix("- ").lstrip()  # a YAML list item's key, not its dash
    return start, len(text) - len(key) + 1


def _python_settings(tree: ast.Module) -> Iterator[Hit]:
    """``worker_pool = "threads"``, ``app.conf.worker_pool = ...``, ``CELERY_WORKER_POOL = ...``,
    ``app.conf.update(worker_pool=...)``, ``{"worker_pool": ...}``."""
    for node in ast.walk(tree):
        values: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_names_setting(t) for t in targets):
                values.append(node.value)
        elif isinstance(node, ast.Call):
            values += [k.value for k in node.keywords if k.arg in SETTING_NAMES]
        elif isinstance(node, ast.Dict):
            values += [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value in SETTING_NAMES
            ]
        for value in values:
            kind = _kind(literal(value))
            if kind:
                yield Hit(value.lineno, value.col_offset + 1, _message(kind))


def _names_setting(target: ast.expr) -> bool:
    if isinstance(target, ast.Subscript):
        return isinstance(target.slice, ast.Constant) and target.slice.value in SETTING_NAMES
    return isinstance(target, ast.Name | ast.Attribute) and last_name(target) in SETTING_NAMES


def _kind(value: object) -> str | None:
    """The pool kind named by a setting's value, ``celery.concurrency.gevent:TaskPool`` too."""
    match = _KIND.search(value.lower()) if isinstance(value, str) else None
    return match[1] if match else None


def _message(kind: str, entry: Workers | None = None) -> str:
    message = (
        f"Celery worker pool {kind!r} with a database pool: Celery's Django fix-up closes the "
        "pool only in prefork workers, so all tasks in this worker share one process-wide pool "
        "that nothing resets"
    )
    if entry is None:
        return message
    concurrency = entry.program.concurrency
    if concurrency is None:
        return (
            f"{message} (--pool {kind}, --concurrency not stated: Celery runs as many tasks at "
            "once as the host has CPUs, all on that one pool)"
        )
    return (
        f"{message}; --pool {kind} --concurrency {concurrency} runs up to {concurrency} tasks "
        f"at once on one pool, and those past its max_size wait for a connection"
    )
