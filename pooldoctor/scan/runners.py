"""Task runners other than Celery, as the deployment files and the settings name them.

Which runner runs the project's tasks, and whether it forks its workers after the project is
loaded: django-rq's ``rqworker`` (RQ's default ``Worker`` forks a work horse per job,
rq/worker/worker_classes.py ``Worker.fork_work_horse``; ``SimpleWorker`` does not fork and
``SpawnWorker`` starts a fresh interpreter), django-q2's ``qcluster`` (``Cluster`` forks its
workers, django_q/cluster.py), Huey's ``run_huey`` with the process worker type
(huey/consumer.py, ``ProcessEnvironment``: ``multiprocessing.get_context('fork')``). Dramatiq is
not among them: its CLI imports the broker and the project in each worker process, after the
fork (dramatiq/cli.py, ``worker_process``), and django_dramatiq's ``rundramatiq`` execs it; the
Tasks framework's ``db_worker`` does not fork. Nothing is imported: commands are read with
:func:`pooldoctor.scan.deployment.commands_in_text`, settings from the syntax tree.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator

from pooldoctor.scan.databases import literal
from pooldoctor.scan.deployment import commands_in_text

RQ, DJANGO_Q, HUEY = "rq", "django-q", "huey"
RQ_WORKER_CLASS = "rq worker class"
"""A settings entry only: ``RQ = {"WORKER_CLASS": ...}``, which django-rq's commands use when
no ``--worker-class`` is given."""
# Management commands and the runner each starts.
_COMMANDS = {"rqworker": RQ, "rqworker-pool": RQ, "qcluster": DJANGO_Q, "run_huey": HUEY}
_MANAGE = re.compile(r"(?:^|/)(?:manage\.py|django-admin)$")
# What the text of a file must hold for it to name a runner (asked before parsing it).
WORDS = ("rqworker", "qcluster", "run_huey", "RQ_QUEUES", "Q_CLUSTER", "HUEY", "WORKER_CLASS")


@dataclasses.dataclass(frozen=True)
class Runner:
    """A command that starts a task runner, or a setting that configures one."""

    file: str
    line: int
    column: int
    kind: str
    """:data:`RQ`, :data:`DJANGO_Q`, :data:`HUEY` (or :data:`RQ_WORKER_CLASS`, a setting)."""
    what: str
    """How a message names it: ``manage.py rqworker``, ``RQ_QUEUES``, ``"worker_type":
    "process"``."""
    forks: bool | None
    """Whether it forks workers after loading the project; None when something else decides
    (``run_huey`` without ``-k``: the ``HUEY`` setting; a project's own RQ worker class)."""
    command: bool
    """A command in a deployment file; False for a setting."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def in_text(name: str, relative: str, lines: list[str]) -> Iterator[Runner]:
    """The runner commands of a deployment file."""
    for command in commands_in_text(name, relative, lines):
        words = [w for w in command.words if w]
        for index, word in enumerate(words):
            kind = _COMMANDS.get(word)
            if kind is None or not _managed(words[:index]):
                continue
            rest = _segment(words[index + 1 :])
            text = lines[command.line - 1] if command.line <= len(lines) else ""
            found = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])(?!\s*:)", text)
            column = found.start() + 1 if found else len(text) - len(text.lstrip()) + 1
            yield Runner(
                relative,
                command.line,
                column,
                kind,
                f"manage.py {word}",
                _command_forks(kind, rest),
                True,
            )
            break


def _managed(before: list[str]) -> bool:
    """``python manage.py``, ``./manage.py``, ``django-admin``, ``python -m django``."""
    if any(_MANAGE.search(w) for w in before):
        return True
    return before[-2:] == ["-m", "django"]


def _segment(words: list[str]) -> list[str]:
    """The command's own words, up to the next ``&&``/``;``/``|``."""
    for index, word in enumerate(words):
        if word in {"&&", "||", ";", "&", "|"}:
            return words[:index]
    return words


def _command_forks(kind: str, words: list[str]) -> bool | None:
    if kind == RQ:
        worker_class = _option(words, "--worker-class")
        # None: RQ["WORKER_CLASS"] decides (see forking), else RQ's Worker
        return None if worker_class is None else _rq_forks(worker_class)
    if kind == HUEY:
        worker_type = _option(words, "--worker-type", "-k")
        return None if worker_type is None else worker_type == "process"
    return True  # qcluster: the cluster forks its workers


def _rq_forks(worker_class: str) -> bool:
    """``rq.worker.Worker`` forks; ``SimpleWorker``/``SpawnWorker`` do not, and a project's own
    class is not known (False: not flagged)."""
    return worker_class.rpartition(".")[2] == "Worker"


def _option(words: list[str], long: str, short: str | None = None) -> str | None:
    value = None
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else None
        if word == long or (short is not None and word == short):
            value = following
        elif word.startswith(long + "="):
            value = word[len(long) + 1 :]
    return value.strip("\"'") if value is not None else None


def in_python(relative: str, tree: ast.Module) -> Iterator[Runner]:
    """Module-level ``RQ_QUEUES``, ``RQ = {"WORKER_CLASS": ...}``, ``Q_CLUSTER`` and ``HUEY``
    settings."""
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                yield from _setting(relative, target, node.value)


def _setting(relative: str, target: ast.Name, value: ast.expr) -> Iterator[Runner]:
    line, column = target.lineno, target.col_offset + 1
    name = target.id
    if name == "RQ_QUEUES":
        yield Runner(relative, line, column, RQ, "RQ_QUEUES", True, False)
    elif name == "RQ" and isinstance(value, ast.Dict):
        found = _key(value, "WORKER_CLASS")
        if found is not None:
            worker_class = literal(found[1])
            forks = isinstance(worker_class, str) and _rq_forks(worker_class)
            where = found[0]
            yield Runner(
                relative, where.lineno, where.col_offset + 1, RQ_WORKER_CLASS,
                "RQ WORKER_CLASS", forks, False,
            )  # fmt: skip
    elif name == "Q_CLUSTER" and isinstance(value, ast.Dict):
        sync = _key(value, "sync")
        forks = sync is None or literal(sync[1]) is not True
        yield Runner(relative, line, column, DJANGO_Q, "Q_CLUSTER", forks, False)
    elif name == "HUEY" and isinstance(value, ast.Dict):
        consumer = _key(value, "consumer")
        options = consumer[1] if consumer else None
        found = _key(options, "worker_type") if isinstance(options, ast.Dict) else None
        if found is not None and literal(found[1]) == "process":
            where = found[0]
            text = '"worker_type": "process"'
            yield Runner(relative, where.lineno, where.col_offset + 1, HUEY, text, True, False)


def _key(node: ast.Dict, name: str) -> tuple[ast.expr, ast.expr] | None:
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == name:
            return key, value
    return None


def forking(runners: tuple[Runner, ...]) -> list[Runner]:
    """The places that say a runner forks after loading the project: its commands when a
    deployment file runs it, else its setting."""
    found: list[Runner] = []
    # django-rq's commands without --worker-class use RQ["WORKER_CLASS"], else RQ's Worker.
    rq_default_forks = all(r.forks for r in runners if r.kind == RQ_WORKER_CLASS)
    for kind in (RQ, DJANGO_Q, HUEY):
        commands = [r for r in runners if r.kind == kind and r.command]
        settings = [r for r in runners if r.kind == kind and not r.command and r.forks]
        if kind == RQ:
            found += [r for r in commands if r.forks or (r.forks is None and rq_default_forks)]
            found += settings if not commands and rq_default_forks else []
        elif kind == HUEY:
            # run_huey without -k: the HUEY setting decides, and is reported.
            found += [r for r in commands if r.forks]
            found += settings if not commands or any(r.forks is None for r in commands) else []
        else:
            found += commands or settings
    return found
