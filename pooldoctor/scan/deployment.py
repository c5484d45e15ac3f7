"""What the deployment files say about how the project is served.

Read as text (Procfiles, heroku.yml, Dockerfiles, compose files, Kubernetes manifests, systemd
units, supervisord configs, shell scripts, Makefiles) and as Python (gunicorn config files,
scripts calling ``uvicorn.run``): which server runs the app and whether it is an ASGI one, where
gunicorn preloads the app, and which processes (Celery workers with their pool kind and
concurrency, web servers) are started and how many. A dependency alone (``uvicorn`` in
requirements.txt or pyproject.toml) is weaker evidence than a command that runs it, and is kept
apart. Nothing YAML-shaped is parsed with a YAML library: compose files, heroku.yml and
manifests are read by indentation, which is all their ``command`` keys need.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import posixpath
import re
import shlex
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
    if _YAML.search(name) and not (_COMPOSE.match(name) or _HEROKU_YML.match(name)):
        # Any other YAML (CI workflows, mkdocs.yml, labels like "app: daphne") says nothing
        # line by line: only a Kubernetes manifest's parsed commands do.
        yield from _parsed_servers(name, relative, lines)
        return
    found: list[Served] = []
    for number, raw in enumerate(lines, start=1):
        line = _COMMENT.sub("", raw)
        if dependency_file:
            match = _DEPENDENCY.search(line)
            if match:
                server = "uvicorn" if match[1].lower() == "uvicorn-worker" else match[1].lower()
                # granian serves WSGI, ASGI or RSGI (its default): the pin alone says nothing
                found.append(Served(relative, number, server, server != "granian", command=False))
            continue
        install = _INSTALL.search(line)
        if install:
            for package in _PACKAGE.finditer(install[1]):
                server = package[1]
                found.append(Served(relative, number, server, server != "granian", command=False))
            continue
        served = command_server(line)
        if served is not None:
            found.append(Served(relative, number, served[0], served[1], command=True))
    if not dependency_file and not (name.endswith(".sh") or name == "Makefile"):
        # A command over several lines or words (ENTRYPOINT ["gunicorn"] with CMD ["-k", ...],
        # a block list) is known once parsed: it replaces what its first line said alone.
        for parsed in _parsed_servers(name, relative, lines):
            if any((s.server, s.asgi) == (parsed.server, parsed.asgi) for s in found):
                continue
            found = [s for s in found if not (s.command and s.line == parsed.line)]
            found.append(parsed)
    yield from sorted(found, key=lambda s: s.line)


def _parsed_servers(name: str, relative: str, lines: list[str]) -> Iterator[Served]:
    for command in commands_in_text(name, relative, lines):
        served = command_server(shlex.join(command.words))
        if served is not None:
            yield Served(relative, command.line, served[0], served[1], command=True)


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


# --- How many processes the deployment files start, and how many connections the server takes.
#
# Read as a lower bound: a count the file does not state (Celery's concurrency defaults to the
# CPU count, a Procfile's dyno count is set outside it, a systemd template's instances are
# enabled by name) is counted as 1, so what is reported is never more than the files say.

# Files read together as one deployment: a host's process managers run side by side; a
# Procfile and heroku.yml describe Heroku's dynos; each compose file and each Dockerfile is one.
HOST, HEROKU = "supervisord/systemd", "Procfile/heroku.yml"
POSTGRES_MAX_CONNECTIONS = 100
POSTGRES_RESERVED = 3
"""PostgreSQL's defaults: ``max_connections`` 100, ``superuser_reserved_connections`` 3."""

_SUPERVISOR = re.compile(r"^(supervisord?.*\.conf|.*\.ini)$")
_COMPOSE = re.compile(r"^(docker-)?compose.*\.ya?ml$")
_DOCKERFILE = re.compile(r"^(Dockerfile.*|.*\.dockerfile)$")
_HEROKU_YML = re.compile(r"^heroku\.ya?ml$")
_YAML = re.compile(r"\.ya?ml$")
_WORKLOAD = re.compile(
    r"^kind:\s*[\"']?(Deployment|StatefulSet|DaemonSet|ReplicaSet|Job|CronJob|Pod)[\"']?\s*(#.*)?$",
    re.MULTILINE,
)
_ENV_DEFAULT = re.compile(r"^\$\{\w+:?-([^}]*)\}$")
_SEPARATORS = frozenset({"&&", "||", ";", "&", "|", "(", ")"})
_WRAPPERS = frozenset({"exec", "nice", "nohup", "env", "tini", "dumb-init", "--", "gosu", "sudo"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh"})
_PROGRAMS = ("celery", "gunicorn", "uvicorn", "hypercorn", "granian", "uwsgi", "daphne")
_CELERY_POOLS = frozenset({"prefork", "processes", "threads", "gevent", "eventlet", "solo"})
_MAX_CONNECTIONS = re.compile(r"(?<![\w-])(?:-c\s*|--)max[_-]connections\s*=\s*[\"']?(\d+)")
_RESERVED = re.compile(
    r"(?<![\w-])(?:-c\s*|--)superuser[_-]reserved[_-]connections\s*=\s*[\"']?(\d+)"
)
_CONF_MAX = re.compile(r"^\s*max_connections\s*=\s*(\d+)")
_CONF_RESERVED = re.compile(r"^\s*superuser_reserved_connections\s*=\s*(\d+)")
_GUNICORN_CONFIG = re.compile(r"(?:^|/)(?:gunicorn[\w.-]*|[\w.-]*gunicorn[\w.-]*conf[\w.-]*)\.py$")


@dataclasses.dataclass(frozen=True)
class Program:
    """What one command line starts."""

    name: str
    """``celery multi``, ``celery worker``, ``gunicorn``, ``uvicorn``..."""
    processes: int
    """Processes that each open their own connections (prefork children, gunicorn workers)."""
    threads: int
    """Threads (or greenlets) per process that may each hold a connection without a pool."""
    arithmetic: str
    """How ``processes`` was counted: ``celery multi start 2 x -c10``."""
    stated: bool = True
    """False when a count the command does not give was taken as 1 (or gunicorn's default)."""
    parents: int = 0
    """Parent processes that load the app and fork the workers: a prefork Celery node's main
    process, gunicorn's master (which loads the app only with ``--preload``)."""
    pool: str = ""
    """A Celery worker's ``-P``/``--pool``: ``prefork`` (also when not given), ``threads``,
    ``gevent``, ``eventlet``, ``solo``; empty for a web server."""
    concurrency: int | None = None
    """A Celery worker's ``-c``/``--concurrency`` (or ``--autoscale``'s maximum) when given."""


@dataclasses.dataclass(frozen=True)
class Workers:
    """A command in a deployment file that starts processes that use the database."""

    file: str
    line: int
    deployment: str
    """The deployment it belongs to: processes of one deployment run against the same server
    at once (:data:`HOST`, :data:`HEROKU`, ``compose.yml``, ``Dockerfile``)."""
    program: Program
    copies: int = 1
    """supervisord ``numprocs``, compose ``deploy.replicas`` or ``scale``."""
    copies_by: str = ""
    """Where ``copies`` comes from: ``numprocs 2``, ``replicas 3``."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def processes(self) -> int:
        return self.copies * self.program.processes

    @property
    def parents(self) -> int:
        return self.copies * self.program.parents


@dataclasses.dataclass(frozen=True)
class Budget:
    """A place that sets the server's ``max_connections`` (a ``postgres -c max_connections=N``
    command, a postgresql.conf)."""

    file: str
    line: int
    max_connections: int
    reserved: int | None = None
    """``superuser_reserved_connections`` when the same place sets it."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass(frozen=True)
class GunicornConfig:
    """``workers = N`` / ``threads = N`` in a gunicorn config file."""

    file: str
    line: int
    workers: int | None
    threads: int | None


def workers_in_text(name: str, relative: str, lines: list[str]) -> Iterator[Workers]:
    """Every command in a deployment file that starts Celery workers or a web server."""
    for command in commands_in_text(name, relative, lines):
        found = program(command.words)
        if found is not None:
            yield Workers(
                relative, command.line, command.deployment, found, command.copies, command.by
            )


def commands_in_text(name: str, relative: str, lines: list[str]) -> Iterator[Command]:
    """The commands a deployment file runs: a Procfile's and heroku.yml's processes, systemd's
    ``ExecStart``, compose's and Kubernetes' ``command`` (with ``args``), a Dockerfile's last
    ``ENTRYPOINT``/``CMD``, supervisord's ``command``, a shell script's or Makefile's lines."""
    if name.startswith("Procfile"):
        for number, line in enumerate(lines, start=1):
            kind, _, command = _COMMENT.sub("", line).partition(":")
            if command.strip() and kind.strip() != "release":
                yield from _entry(relative, number, HEROKU, _tokens(command))
    elif _HEROKU_YML.match(name):
        yield from _heroku_yml(relative, lines)
    elif name.endswith(".service"):
        for number, command in _continued(lines):
            key, _, value = command.partition("=")
            if key.strip() == "ExecStart":
                yield from _entry(relative, number, HOST, _tokens(value.lstrip("-@:+!")))
    elif _COMPOSE.match(name):
        for service in compose_services(lines):
            if service.command is not None:
                yield from _entry(
                    relative, service.line, relative, service.command, *service.copies
                )
    elif _DOCKERFILE.match(name):
        yield from _dockerfile(relative, lines)
    elif _YAML.search(name):
        directory = posixpath.dirname(relative)
        deployment = (
            f"Kubernetes manifests in {directory}/" if directory else "Kubernetes manifests"
        )
        for container in manifest_containers(lines):
            by = f"replicas {container.replicas}" if container.replicas > 1 else ""
            yield from _entry(
                relative, container.line, deployment, container.command, container.replicas, by
            )
    elif name.endswith(".sh") or name == "Makefile":
        yield from _script(name, relative, lines)
    elif _SUPERVISOR.match(name) or any(line.startswith("[program:") for line in lines):
        yield from _supervisord(relative, lines)


def budgets_in_text(name: str, relative: str, lines: list[str]) -> Iterator[Budget]:
    """``postgres -c max_connections=200`` anywhere in a deployment file; ``max_connections``
    in a postgresql.conf."""
    conf = name.startswith("postgresql") and name.endswith(".conf")
    reserved_in_file: int | None = None
    found: list[tuple[int, int]] = []
    for number, raw in enumerate(lines, start=1):
        line = _COMMENT.sub("", raw) if not conf else raw.split("#", 1)[0]
        limit = (_CONF_MAX if conf else _MAX_CONNECTIONS).search(line)
        reserved = (_CONF_RESERVED if conf else _RESERVED).search(line)
        if reserved:
            reserved_in_file = int(reserved[1])
        if limit:
            found.append((number, int(limit[1])))
    for number, connections in found:
        yield Budget(relative, number, connections, reserved_in_file)


def gunicorn_config(relative: str, tree: ast.Module) -> GunicornConfig | None:
    """``workers``/``threads`` set in a gunicorn config file (``gunicorn.conf.py``); an
    environment lookup counts as its default."""
    if not _GUNICORN_CONFIG.search(relative):
        return None
    values: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = dotted(node.targets[0])
            value = literal(node.value)
            if target in {"workers", "threads"} and _integer(value) is not None:
                values[target] = (node.lineno, _integer(value) or 1)
    if not values:
        return None
    line = min(where for where, _ in values.values())
    workers = values.get("workers", (0, None))[1]
    threads = values.get("threads", (0, None))[1]
    return GunicornConfig(relative, line, workers, threads)


def program(tokens: list[str]) -> Program | None:
    """What a command (as shell words) starts, if it starts Celery workers or a web server;
    the first such command of a ``&&``/``;`` chain, ``sh -c "..."`` included."""
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in _SEPARATORS:
            segment.append(token)
            continue
        found = _segment_program(segment)
        if found is not None:
            return found
        segment = []
    return None


def _segment_program(words: list[str]) -> Program | None:
    words = [w for w in words if w]
    while words and (words[0] in _WRAPPERS or re.match(r"^\w+=", words[0])):
        words = words[1:]
    if not words:
        return None
    command = words[0].rsplit("/", 1)[-1]
    if command.startswith("$"):  # ${CELERY_BIN} (Celery's own systemd example), $GUNICORN
        variable = command.strip("${}").lower()
        command = next((p for p in _PROGRAMS if p in variable), command)
    if command in _SHELLS and "-c" in words[:-1]:
        return program(_tokens(words[words.index("-c") + 1]))
    if re.match(r"^python[\d.]*$", command) and words[1:2] == ["-m"] and len(words) > 2:
        words, command = words[2:], words[2]
    elif command in {"newrelic-admin", "ddtrace-run", "opentelemetry-instrument"}:
        return _segment_program(words[2:] if words[1:2] == ["run-program"] else words[1:])
    rest = words[1:]
    if command == "celery":
        return _celery(rest)
    if command == "gunicorn":
        return _gunicorn(rest)
    if command in {"uvicorn", "hypercorn", "granian"}:
        count = _option(rest, "--workers", "-w" if command == "hypercorn" else None)
        return _web(command, count, "--workers", 1)
    if command == "uwsgi":
        count = _option(rest, "--processes", "-p") or _option(rest, "--workers")
        threads = _option(rest, "--threads")
        return _web(command, count, "--processes", threads or 1)
    if command == "daphne":
        return Program("daphne", 1, 1, "daphne: 1 process")
    if command == "waitress-serve":
        threads = _option(rest, "--threads")
        return Program("waitress", 1, threads or 4, "waitress: 1 process")
    return None


def _celery(words: list[str]) -> Program | None:
    concurrency = _option(words, "--concurrency", "-c")
    autoscale = _option_text(words, "--autoscale")
    if concurrency is None and autoscale:
        concurrency = _integer(autoscale.split(",")[0])
    pool = (_option_text(words, "--pool", "-P") or "prefork").lower()
    pool = pool if pool in _CELERY_POOLS else "prefork"
    c_text = f"-c{concurrency}" if concurrency else "concurrency not stated (the CPU count: 1)"
    c = concurrency or 1
    if "multi" in words:
        after = words[words.index("multi") + 1 :]
        if not after or after[0] not in {"start", "restart"}:
            return None  # stop, stopwait, kill, show: nothing more runs
        names = []
        for word in after[1:]:
            if word.startswith("-"):
                break
            names.append(word)
        nodes = _integer(names[0]) if len(names) == 1 else None
        if nodes is None:
            nodes = len([n for n in names if not n.startswith("$")]) or 1
        groups = f"celery multi start {nodes} {'group' if nodes == 1 else 'groups'}"
        if pool in {"prefork", "processes"}:
            arithmetic = f"{groups} x {c_text}"
            return Program(
                "celery multi",
                nodes * c,
                1,
                arithmetic,
                bool(concurrency),
                nodes,
                pool,
                concurrency,
            )
        threads = 1 if pool == "solo" else c
        arithmetic = f"{groups} ({pool} {c_text})"
        return Program("celery multi", nodes, threads, arithmetic, True, 0, pool, concurrency)
    if "worker" not in words:
        return None  # beat, flower, inspect...
    if pool in {"prefork", "processes"}:
        arithmetic = f"celery worker {c_text}"
        return Program("celery worker", c, 1, arithmetic, bool(concurrency), 1, pool, concurrency)
    threads = 1 if pool == "solo" else c
    arithmetic = f"celery worker -P {pool} {c_text}"
    return Program("celery worker", 1, threads, arithmetic, True, 0, pool, concurrency)


def _gunicorn(words: list[str]) -> Program:
    workers = _option(words, "--workers", "-w")
    threads = _option(words, "--threads") or 1
    arithmetic = f"gunicorn -w {workers}" if workers else "gunicorn (1 worker by default)"
    if threads > 1:
        arithmetic += f" --threads {threads}"
    return Program("gunicorn", workers or 1, threads, arithmetic, workers is not None, 1)


def _web(name: str, count: int | None, option: str, threads: int) -> Program:
    arithmetic = f"{name} {option} {count}" if count else f"{name}: 1 process"
    return Program(name, count or 1, threads, arithmetic, count is not None)


def _option_text(words: list[str], long: str, short: str | None = None) -> str | None:
    """The value of ``--long N``, ``--long=N``, ``-s N`` or ``-sN`` (the last one given)."""
    value = None
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else None
        if word == long or (short and word == short):
            value = following
        elif word.startswith(long + "="):
            value = word[len(long) + 1 :]
        elif short and word.startswith(short) and len(word) > len(short) and word[2] != ":":
            value = word[len(short) :].lstrip("=")
    return value


def _option(words: list[str], long: str, short: str | None = None) -> int | None:
    text = _option_text(words, long, short)
    return _integer(text) if text is not None else None


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        text = value.strip().strip("\"'")
        default = _ENV_DEFAULT.match(text)
        text = default[1] if default else text
        return int(text) if text.isdigit() and int(text) > 0 else None
    return None


def _tokens(command: str) -> list[str]:
    """Shell words of a command: an exec-form JSON array (``["gunicorn", "-w", "4"]``) or a
    shell line (``&&``, ``;`` and ``|`` as words of their own)."""
    text = command.strip()
    if text.startswith("["):
        try:
            words = json.loads(text)
        except ValueError:
            words = re.findall(r"""["']([^"']*)["']""", text)
        if isinstance(words, list):
            return [str(w) for w in words]
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote
        return text.split()


@dataclasses.dataclass(frozen=True)
class Command:
    """A command a deployment file runs, as shell words, with what it belongs to."""

    line: int
    deployment: str
    words: list[str]
    copies: int = 1
    by: str = ""


def _entry(
    relative: str, line: int, deployment: str, tokens: list[str], copies: int = 1, by: str = ""
) -> Iterator[Command]:
    yield Command(line, deployment, tokens, copies, by)


def _continued(lines: list[str]) -> Iterator[tuple[int, str]]:
    """Logical lines: a line ending in a backslash goes on on the next (systemd, Dockerfile)."""
    start, parts = 0, list[str]()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not parts:
            start = number
            if line.lstrip().startswith(("#", ";")):
                continue
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, " ".join(p.strip() for p in parts)
        parts = []
    if parts:
        yield start, " ".join(p.strip() for p in parts)


def _supervisord(relative: str, lines: list[str]) -> Iterator[Command]:
    """``[program:x]`` sections: ``command`` (continued on indented lines) x ``numprocs``."""
    sections: list[dict[str, tuple[int, str]]] = []
    key = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith(("#", ";")):
            continue
        if raw.startswith("["):
            named = raw.strip().startswith(("[program:", "[fcgi-program:"))
            sections.append({} if named else {"ignored": (number, "")})
            key = None
            continue
        if not sections:
            continue
        if raw[0] in " \t" and key is not None:  # a continuation line
            line, value = sections[-1][key]
            sections[-1][key] = (line, f"{value} {raw.strip()}")
            continue
        name, equals, value = raw.partition("=")
        if equals:
            key = name.strip()
            sections[-1][key] = (number, re.sub(r"\s;.*", "", value).strip())
    for section in sections:
        if "ignored" in section or "command" not in section:
            continue
        line, command = section["command"]
        numprocs = _integer(section.get("numprocs", (0, "1"))[1]) or 1
        by = f"numprocs {numprocs}" if numprocs > 1 else ""
        yield from _entry(relative, line, HOST, _tokens(command), numprocs, by)


def _dockerfile(relative: str, lines: list[str]) -> Iterator[Command]:
    """The last ``ENTRYPOINT`` and ``CMD`` (the final stage's, as ``docker run`` runs it)."""
    last: dict[str, tuple[int, list[str]]] = {}
    exec_form = False
    for number, line in _continued(lines):
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() in {"CMD", "ENTRYPOINT"}:
            last[instruction.upper()] = (number, _tokens(rest))
            if instruction.upper() == "ENTRYPOINT":
                exec_form = rest.strip().startswith("[")
        elif instruction.upper() == "FROM":
            last.clear()
    entry, cmd = last.get("ENTRYPOINT"), last.get("CMD")
    if entry and exec_form and cmd:
        entry = (entry[0], entry[1] + cmd[1])  # ENTRYPOINT ["gunicorn"] CMD ["-w", "4", ...]
    for found in (entry, cmd):
        if found is not None and program(found[1]) is not None:
            yield from _entry(relative, found[0], relative, found[1])
            return


@dataclasses.dataclass(frozen=True)
class ComposeService:
    name: str
    line: int
    """The line of ``command:`` (else of the service's name)."""
    command: list[str] | None
    copies: tuple[int, str] = (1, "")


def compose_services(lines: list[str]) -> Iterator[ComposeService]:
    """The services of a compose file, read by indentation (no YAML library): each one's
    ``command`` (a string, a flow list, a block list or a folded block) and its
    ``deploy.replicas`` or ``scale``."""
    services_at = next(
        (i for i, line in enumerate(lines) if re.match(r"^services:\s*(#.*)?$", line)), None
    )
    if services_at is None:
        return
    body = list(enumerate(lines[services_at + 1 :], start=services_at + 2))
    body = [(n, line) for n, line in body if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        return
    service_indent = _indent(body[0][1])
    services: list[tuple[int, str, list[tuple[int, str]]]] = []
    for number, line in body:
        indent = _indent(line)
        if indent < service_indent:
            break  # the next top-level key
        if indent == service_indent:
            services.append((number, line.strip().rstrip(":").strip("\"'"), []))
        elif services:
            services[-1][2].append((number, line))
    for number, name, block in services:
        yield _service(name, number, block)


def _service(name: str, number: int, block: list[tuple[int, str]]) -> ComposeService:
    if not block:
        return ComposeService(name, number, None)
    key_indent = _indent(block[0][1])
    command: list[str] | None = None
    line = number
    copies: tuple[int, str] = (1, "")
    for index, (where, text) in enumerate(block):
        if _indent(text) != key_indent:
            continue
        key, _, value = text.strip().partition(":")
        value = re.sub(r"\s+#.*", "", value).strip()
        nested = []
        for _, below in block[index + 1 :]:
            if _indent(below) <= key_indent:
                break
            nested.append(below.strip())
        if key in {"command", "entrypoint"} and (command is None or key == "command"):
            line = where
            if value in {"", ">", "|", ">-", "|-"}:
                if nested and nested[0].startswith("- "):
                    command = [_unquote(item[2:]) for item in nested if item.startswith("- ")]
                else:
                    command = _tokens(" ".join(nested))
            else:
                command = _tokens(_unquote(value) if not value.startswith("[") else value)
        elif key == "scale" and _integer(value):
            copies = (_integer(value) or 1, f"scale {value}")
        elif key == "deploy":
            for item in nested:
                replicas = re.match(r"^replicas:\s*[\"']?(\d+)", item)
                if replicas and int(replicas[1]) > 0:
                    copies = (int(replicas[1]), f"replicas {replicas[1]}")
    return ComposeService(name, line, command, copies)


def _heroku_yml(relative: str, lines: list[str]) -> Iterator[Command]:
    """heroku.yml's ``run:`` section: ``web: gunicorn ...`` or a ``command:`` list."""
    running = False
    for number, raw in enumerate(lines, start=1):
        line = _COMMENT.sub("", raw)
        if re.match(r"^\S", line):
            running = line.startswith("run:")
            continue
        text = line.strip()
        if not running or not text:
            continue
        value = text[2:] if text.startswith("- ") else text.partition(":")[2]
        if value.strip():
            yield from _entry(relative, number, HEROKU, _tokens(_unquote(value.strip())))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _script(name: str, relative: str, lines: list[str]) -> Iterator[Command]:
    """Every command of a shell script (or a Makefile's recipe lines), each script a deployment
    of its own: what runs it (a Dockerfile's ``CMD ["./start.sh"]``) starts nothing itself."""
    for number, command in _continued(lines):
        if name == "Makefile":
            if not lines[number - 1].startswith("\t"):
                continue  # targets and variables; recipes are tab-indented
            command = command.strip().lstrip("@-+")
        yield from _entry(relative, number, relative, _tokens(_COMMENT.sub("", command)))


@dataclasses.dataclass(frozen=True)
class Container:
    """A container of a Kubernetes workload: its ``command`` and ``args`` as one command."""

    line: int
    """The line of ``command:`` (else of ``args:``)."""
    command: list[str]
    replicas: int = 1
    """The workload's ``replicas`` (1 when not stated, as for a Job, a CronJob, a Pod)."""


_BLOCK_SCALARS = frozenset({">", "|", ">-", "|-", ">+", "|+"})
_CONTAINER_KEY = re.compile(r"^(\s*)(-\s+)?(command|args):(.*)$")
_REPLICAS = re.compile(r"^\s+replicas:\s*[\"']?(\d+)[\"']?\s*(#.*)?$")


def manifest_containers(lines: list[str]) -> Iterator[Container]:
    """The containers of the workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
    CronJob, Pod) in a Kubernetes manifest, each ``---`` document on its own, read by
    indentation (no YAML library). Nothing but a cheap text test for any other YAML file."""
    if not any("kind:" in line for line in lines) or not _WORKLOAD.search("\n".join(lines)):
        return
    start = 0
    for index in [*(i for i, line in enumerate(lines) if line.startswith("---")), len(lines)]:
        document = lines[start:index]
        if _WORKLOAD.search("\n".join(document)):
            yield from _containers(document, start)
        start = index + 1


def _containers(document: list[str], offset: int) -> Iterator[Container]:
    replicas = next((int(m[1]) for m in map(_REPLICAS.match, document) if m), 1) or 1
    keys: list[tuple[int, int, str, list[str]]] = []  # (index, column, key, words)
    for index, raw in enumerate(document):
        match = _CONTAINER_KEY.match(_COMMENT.sub("", raw))
        if match is None:
            continue
        column = len(match[1]) + len(match[2] or "")
        keys.append((index, column, match[3], _yaml_words(match[4], document[index + 1 :], column)))
    paired: set[int] = set()
    for position, (index, column, key, words) in enumerate(keys):
        if position in paired:
            continue
        command = list(words)
        following = keys[position + 1] if position + 1 < len(keys) else None
        if key == "command" and following and following[2] == "args" and following[1] == column:
            between = document[index + 1 : following[0]]
            if not any(line.strip() and _indent(line) < column for line in between):
                command += following[3]  # the same container: args follow the command
                paired.add(position + 1)
        if command:
            yield Container(offset + index + 1, command, replicas)


def _yaml_words(value: str, below: list[str], column: int) -> list[str]:
    """A ``command``/``args`` value: a flow list, a block list below the key, a string."""
    value = value.strip()
    if value.startswith("["):
        if value.endswith("]"):
            try:
                words = json.loads(value)
            except ValueError:
                words = [_unquote(w) for w in value[1:-1].split(",") if w.strip()]
            return [str(w) for w in words] if isinstance(words, list) else []
        return []
    if value and value not in _BLOCK_SCALARS:
        return _tokens(_unquote(value))
    items: list[str] = []
    block: int | None = None  # the indent of a "- >" item whose lines follow
    for line in below:
        text = _COMMENT.sub("", line).strip()
        if not text:
            continue
        if block is not None and _indent(line) > block:
            items[-1] = f"{items[-1]} {text}".strip()  # "- >": one word over several lines
            continue
        block = None
        if _indent(line) < column or (_indent(line) == column and not text.startswith("- ")):
            break
        if not text.startswith("- "):
            if value:  # a folded or literal block: its lines are the command
                items += _tokens(text)
            continue
        item = text[2:].strip()
        if item in _BLOCK_SCALARS:
            block, item = _indent(line), ""
        items.append(_unquote(item))
    return items
