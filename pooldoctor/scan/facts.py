"""Project-wide facts, gathered once before the checks run.

Several hazards need two places at once: a pool in the settings *and* gunicorn's ``--preload`` in a
Procfile, a pool *and* a Celery version older than 5.6 in a lock file. The facts record the first
part so that each check can look at one file.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Sequence

from pooldoctor.scan.databases import read_databases
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import calls, dotted, last_name

# "celery==5.5.3", "celery[redis]>=5.4,<5.6", 'celery = "5.5.3"', name = "celery"\nversion = "5.5.3"
# (also dependencies = ["django", "celery==5.5.3"] and Pipfile's celery = "==5.5.3")
_PIN = re.compile(
    r"(?im)(?:^|[\[,])[ \t]*[\"']?celery(?:\[[^\]]*\])?[\"']?\s*(?:==|===|~=|=)\s*[\"']?"
    r"(?:\^|==|~=)?(\d+)\.(\d+)(?:\.(\d+))?"
)
_LOCK = re.compile(r'(?m)^name\s*=\s*"celery"\s*\nversion\s*=\s*"(\d+)\.(\d+)(?:\.(\d+))?"')
_UPPER = re.compile(r"(?im)^[ \t]*[\"']?celery(?:\[[^\]]*\])?[^\n#]*<\s*(\d+)\.(\d+)")


@dataclasses.dataclass(frozen=True)
class Location:
    file: str
    line: int


@dataclasses.dataclass(frozen=True)
class Facts:
    pools: tuple[Location, ...] = ()
    """Where a database pool is (or may be, from the environment) switched on."""
    uses_celery: bool = False
    celery_version: tuple[int, int] | None = None
    """The Celery release the project pins or locks (major, minor), if a file says."""
    celery_version_at: Location | None = None
    discards_pool_in_child: bool = False
    """A ``worker_process_init`` handler calls ``close_pool()``."""
    gunicorn_fork_hook: bool = False
    """A gunicorn ``post_fork``/``post_worker_init`` hook closes connections or the pool."""
    uses_gunicorn: bool = False

    @property
    def has_pool(self) -> bool:
        return bool(self.pools)

    @property
    def forks_workers(self) -> bool:
        """Celery's default pool is prefork; gunicorn forks its workers."""
        return self.uses_celery or self.uses_gunicorn


def gather(files: Sequence[SourceFile]) -> Facts:
    pools: list[Location] = []
    uses_celery = uses_gunicorn = discards = fork_hook = False
    version: tuple[int, int] | None = None
    version_at: Location | None = None
    for source in files:
        text = source.text
        if not source.is_python:
            found = _celery_version(text)
            if found and version is None:
                version, line = found
                version_at = Location(source.relative, line)
            uses_gunicorn = uses_gunicorn or "gunicorn" in text
            continue
        if "gunicorn" in text or source.relative.endswith("gunicorn.conf.py"):
            uses_gunicorn = True
        if not any(word in text for word in ("celery", "DATABASES", "pool", "post_")):
            continue  # "post_": a gunicorn post_fork hook may only call connections.close_all()
        tree = source.tree
        if tree is None:
            continue
        if "celery" in text and _imports(tree, "celery"):
            uses_celery = True
        if "pool" in text:
            pools += [Location(source.relative, s.line) for s in read_databases(tree).pools]
        discards = discards or _handler_calls(tree, {"worker_process_init"}, {"close_pool"})
        fork_hook = fork_hook or _gunicorn_hook(tree)
    return Facts(
        pools=tuple(pools),
        uses_celery=uses_celery,
        celery_version=version,
        celery_version_at=version_at,
        discards_pool_in_child=discards,
        gunicorn_fork_hook=fork_hook,
        uses_gunicorn=uses_gunicorn,
    )


def _celery_version(text: str) -> tuple[tuple[int, int], int] | None:
    for pattern in (_PIN, _LOCK, _UPPER):
        match = pattern.search(text)
        if match:
            major, minor = int(match[1]), int(match[2])
            if pattern is _UPPER:
                # "<5.6" means at most 5.5; "<6" style bounds say nothing useful here.
                if minor == 0:
                    continue
                minor -= 1
            line = text.count("\n", 0, match.start()) + 1
            return (major, minor), line
    return None


def _imports(tree: ast.Module, module: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            return True
    return False


def _handler_calls(tree: ast.Module, signals: set[str], wanted: set[str]) -> bool:
    """A function connected to one of ``signals`` (``@sig.connect`` or ``sig.connect(f)``) whose
    body calls one of ``wanted``."""
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    handlers: list[ast.AST] = []
    for function in functions.values():
        for decorator in function.decorator_list:
            name = dotted(decorator)
            if name.endswith(".connect") and name.rsplit(".", 2)[-2] in signals:
                handlers.append(function)
    for call in calls(tree):
        name = dotted(call.func)
        if name.endswith(".connect") and name.rsplit(".", 2)[-2] in signals and call.args:
            target = functions.get(dotted(call.args[0]))
            if target is not None:
                handlers.append(target)
    return any(last_name(c.func) in wanted for h in handlers for c in calls(h))


def _gunicorn_hook(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in {"post_fork", "post_worker_init"}:
            names = {last_name(c.func) for c in calls(node)}
            if names & {"close_pool", "close_all", "close_old_connections", "close"}:
                return True
    return False
