"""What the deployment files say about how the project is served.

Read as text (Procfiles, Dockerfiles, compose files, systemd units, supervisord configs, shell
scripts, Makefiles) and as Python (gunicorn config files, scripts calling ``uvicorn.run``): which
server runs the app and whether it is an ASGI one, and where gunicorn preloads the app. A
dependency alone (``uvicorn`` in requirements.txt or pyproject.toml) is weaker evidence than a
command that runs it, and is kept apart.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator

from pooldoctor.scan.databases import literal
from pooldoctor.scan.syntax import dotted

ASGI_SERVERS = ("uvicorn", "daphne", "hypercorn", "granian")
_COMMENT = re.compile(r"^\s*[#;].*|\s#.*")
# A server as a command word: "uvicorn mysite.asgi:application", "exec daphne -b 0.0.0.0 ...",
# '["uvicorn", "mysite.asgi:app"]', "python -m uvicorn ...", "/venv/bin/hypercorn ...".
_SERVER = re.compile(r"""(?:^|[\s"'\[=/,;&|(])(uvicorn|daphne|hypercorn|granian)(?=["'\s,\]]|$)""")
# gunicorn -k uvicorn.workers.UvicornWorker, --worker-class=uvicorn_worker.UvicornWorker
_UVICORN_WORKER = re.compile(
    r"""(uvicorn\.workers\.Uvicorn\w*Worker|uvicorn_worker\.Uvicorn\w*Worker)"""
)
_WSGI_INTERFACE = re.compile(r"--interface[\s=\"',]+wsgi\b")
_WSGI_TARGET = re.compile(r"[\w.]*\bwsgi(?::\w+)?\b")
_ASGI_TARGET = re.compile(r"[\w.]*\basgi(?::\w+)?\b")
# requirements: "uvicorn[standard]==0.30", pyproject: '"daphne>=4"', poetry: 'hypercorn = "^0.17"'
_DEPENDENCY = re.compile(
    r"""(?im)(?:^|[\[,])[ \t]*["']?(uvicorn|daphne|hypercorn|granian|uvicorn-worker)"""
    r"""(?:\[[^\]]*\])?["']?[ \t]*(?:[<>=!~;,"'\]]|$)"""
)
# "RUN pip install uvicorn[standard]", "uv add daphne": a dependency, not a server being run
_INSTALL = re.compile(r"\b(?:pip3?|uv|poetry|pipx|pipenv)\b[^#]*?\b(?:install|add)\b(.*)")
_PACKAGE = re.compile(
    r"""(?:^|[\s"'])(uvicorn|daphne|hypercorn|granian)(?:\[[^\]]*\])?(?:[<>=~"'\s]|$)"""
)
_PRELOAD = re.compile(r"(?<![\w-])--preload(?![\w-])")
_DEPENDENCY_FILES = re.compile(
    r"^(requirements.*\.(txt|in)|constraints.*\.txt|pyproject\.toml|setup\.cfg|Pipfile)$"
)


@dataclasses.dataclass(frozen=True)
class Served:
    """A place that says which server runs the app."""

    file: str
    line: int
    server: str
    """What runs: ``uvicorn``, ``gunicorn -k uvicorn.workers.UvicornWorker``, ``gunicorn``..."""
    asgi: bool
    command: bool
    """A command or a server config that runs it; False for a dependency only."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def servers_in_text(name: str, relative: str, lines: list[str]) -> Iterator[Served]:
    """Servers named in a requirement or deployment file (one per line at most)."""
    dependency_file = bool(_DEPENDENCY_FILES.match(name)) or relative.startswith("requirements/")
    if name.endswith(".lock"):
        return  # lock files list every transitive package: neither a command nor a choice
    for number, raw in enumerate(lines, start=1):
        line = _COMMENT.sub("", raw)
        if dependency_file:
            match = _DEPENDENCY.search(line)
            if match:
                server = "uvicorn" if match[1].lower() == "uvicorn-worker" else match[1].lower()
                # granian serves WSGI, ASGI or RSGI (its default): the pin alone says nothing
                yield Served(relative, number, server, server != "granian", command=False)
            continue
        install = _INSTALL.search(line)
        if install:
            for package in _PACKAGE.finditer(install[1]):
                server = package[1]
                yield Served(relative, number, server, server != "granian", command=False)
            continue
        served = command_server(line)
        if served is not None:
            yield Served(relative, number, served[0], served[1], command=True)


def command_server(line: str) -> tuple[str, bool] | None:
    """The server a command line runs and whether it serves ASGI, or None."""
    worker = _UVICORN_WORKER.search(line)
    if worker and "gunicorn" in line:
        return f"gunicorn -k {worker[1]}", True
    match = _SERVER.search(line)
    if match:
        server = match[1]
        rest = line[match.end() :]
        wsgi_app = _WSGI_TARGET.search(rest) and not _ASGI_TARGET.search(rest)
        if _WSGI_INTERFACE.search(rest) or (wsgi_app and server != "daphne"):
            return server, False
        if server == "granian" and not re.search(r"--interface[\s=\"',]+asgi", rest):
            return server, False  # granian's default interface is rsgi, not asgi
        return server, True
    if re.search(r"(?:^|[\s\"'\[/=])(gunicorn|uwsgi|waitress-serve)(?=[\"'\s,\]]|$)", line):
        return "gunicorn" if "gunicorn" in line else "uwsgi", False
    return None


def servers_in_python(relative: str, tree: ast.Module) -> Iterator[Served]:
    """``worker_class = "uvicorn.workers.UvicornWorker"`` in a gunicorn config;
    ``uvicorn.run("mysite.asgi:application")`` in a script."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            named = any(dotted(t) == "worker_class" for t in node.targets)
            value = literal(node.value)
            if named and isinstance(value, str) and _UVICORN_WORKER.search(value):
                yield Served(relative, node.lineno, f"gunicorn -k {value}", True, command=True)
        elif isinstance(node, ast.Call) and dotted(node.func) in {
            "uvicorn.run",
            "hypercorn.asyncio.serve",
        }:
            target = literal(node.args[0]) if node.args else None
            asgi = not (isinstance(target, str) and "wsgi" in target and "asgi" not in target)
            yield Served(relative, node.lineno, dotted(node.func), asgi, command=True)


def preloads_in_text(lines: list[str]) -> Iterator[tuple[int, int]]:
    """(line, column) of every ``--preload`` in a file that runs gunicorn."""
    for number, line in enumerate(lines, start=1):
        for match in _PRELOAD.finditer(_COMMENT.sub("", line)):
            yield number, match.start() + 1


def preloads_in_python(tree: ast.Module) -> Iterator[tuple[int, int]]:
    """(line, column) of ``preload_app = True`` in a gunicorn config."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        named = any(isinstance(t, ast.Name) and t.id == "preload_app" for t in targets)
        if named and literal(value) is True:
            yield node.lineno, node.col_offset + 1
