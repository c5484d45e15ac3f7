"""Project-wide facts, gathered once before the checks run.

Several hazards need two places at once: a pool in the settings *and* gunicorn's ``--preload`` in a
Procfile, a pool *and* a Celery version older than 5.6 in a lock file. The facts record the first
part so that each check can look at one file.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Sequence

from pooldoctor.scan import calls as call_graph
from pooldoctor.scan import deployment, queries
from pooldoctor.scan import runners as task_runners
from pooldoctor.scan import settings as live
from pooldoctor.scan.deployment import Served
from pooldoctor.scan.source import SourceFile
from pooldoctor.scan.syntax import calls, dotted, last_name, statements
from pooldoctor.scan.values import Place

# "celery==5.5.3", "celery[redis]>=5.4,<5.6", 'celery = "5.5.3"', name = "celery"\nversion = "5.5.3"
# (also dependencies = ["django", "celery==5.5.3"] and Pipfile's celery = "==5.5.3")
_PIN = re.compile(
    r"(?im)(?:^|[\[,])[ \t]*[\"']?celery(?:\[[^\]]*\])?[\"']?\s*(?:==|===|~=|=)\s*[\"']?"
    r"(?:\^|==|~=)?(\d+)\.(\d+)(?:\.(\d+))?"
)
_LOCK = re.compile(r'(?m)^name\s*=\s*"celery"\s*\nversion\s*=\s*"(\d+)\.(\d+)(?:\.(\d+))?"')
_UPPER = re.compile(r"(?im)^[ \t]*[\"']?celery(?:\[[^\]]*\])?[^\n#]*<\s*(\d+)\.(\d+)")
# Modules that get_wsgi_application()/get_asgi_application() import before gunicorn forks with
# --preload: the entry point, settings, and what django.setup() loads (each app's apps.py and
# models, admin.py through admin's autodiscover) and load_middleware() imports. The URLconf and
# the views are imported at the first request, in the worker, and are not among them.
_APP_LOADED = re.compile(
    r"(?:^|/)(?:wsgi|asgi|settings|apps|models|admin|middlewares?)\.py$"
    r"|(?:^|/)(?:settings|models|middleware)/[^/]+\.py$"
)


@dataclasses.dataclass(frozen=True)
class Location:
    file: str
    line: int


@dataclasses.dataclass(frozen=True)
class Query:
    """A database query that runs while a module is imported (or in ``AppConfig.ready()``)."""

    file: str
    line: int
    text: str
    """The query's source, shortened: ``Category.objects.get(slug='default')``."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass(frozen=True)
class Facts:
    pools: tuple[Location, ...] = ()
    """Where the live settings switch a database pool on."""
    settings: live.ProjectSettings = dataclasses.field(default_factory=live.ProjectSettings)
    """The live settings modules, where they are named, and their database aliases."""
    uses_celery: bool = False
    celery_version: tuple[int, int] | None = None
    """The Celery release the project pins or locks (major, minor), if a file says."""
    celery_version_at: Location | None = None
    discards_pool_in_child: bool = False
    """A ``worker_process_init`` handler calls ``close_pool()``."""
    gunicorn_fork_hook: bool = False
    """A gunicorn ``post_fork``/``post_worker_init`` hook closes connections or the pool."""
    uses_gunicorn: bool = False
    fork_hook_calls: frozenset[str] = frozenset()
    """What gunicorn ``post_fork``/``post_worker_init`` hooks call: ``close_pool``,
    ``close_all``..."""
    servers: tuple[Served, ...] = ()
    """Where deployment files run a server (or list one as a dependency)."""
    preloads: tuple[Location, ...] = ()
    """gunicorn ``--preload`` or ``preload_app = True``."""
    persistent: tuple[Location, ...] = ()
    """``CONN_MAX_AGE`` in the live settings set to a non-zero value, None, or something scan
    cannot tell."""
    app_import_queries: tuple[Query, ...] = ()
    """Queries at import time in the modules a WSGI/ASGI app loads before gunicorn forks."""
    url_imports: frozenset[str] = frozenset()
    """Modules a URLconf (a module with ``urlpatterns``) imports: where its views live."""
    workers: tuple[deployment.Workers, ...] = ()
    """Commands in deployment files that start Celery workers or web servers, with counts."""
    budgets: tuple[deployment.Budget, ...] = ()
    """Places that set the server's ``max_connections``."""
    gunicorn_configs: tuple[deployment.GunicornConfig, ...] = ()
    """``workers``/``threads`` in gunicorn config files."""
    calls: call_graph.CallGraph = dataclasses.field(default_factory=call_graph.CallGraph)
    """The project's functions, what they do to the database and whom they call."""
    runners: tuple[task_runners.Runner, ...] = ()
    """Commands and settings that start or configure RQ, django-q or Huey workers."""

    def is_view_module(self, source: SourceFile) -> bool:
        """``views.py``, a module under ``views/``, or one a URLconf imports."""
        if re.search(r"(?:^|/)views(?:\.py$|/)", source.relative):
            return True
        name = source.module_name
        return any(name == m or name.endswith(f".{m}") for m in self.url_imports)

    @property
    def asgi_server(self) -> Served | None:
        """The evidence that the app is served over ASGI: a command that runs an ASGI server
        when any command says how the app is served, else an ASGI server among the
        dependencies."""
        commands = [s for s in self.servers if s.command]
        candidates = commands or list(self.servers)
        return next((s for s in candidates if s.asgi), None)

    @property
    def shares_connections_after_fork(self) -> bool:
        """A connection opened in gunicorn's master outlives the request cycle of a worker: a
        pool, or persistent connections (with CONN_MAX_AGE=0 each worker closes its inherited
        copy at its first request)."""
        return self.has_pool or bool(self.persistent)

    @property
    def preload_shares_import_query(self) -> bool:
        """gunicorn preloads an app whose loading runs a query, with connections that outlive it
        and no fork hook that undoes them: PD315."""
        return (
            bool(self.preloads and self.app_import_queries)
            and self.shares_connections_after_fork
            and not self.preload_fixed_by_hook
        )

    @property
    def preload_fixed_by_hook(self) -> bool:
        """A post_fork hook undoes what the master opened: ``close_pool()`` with a pool (closing a
        pooled connection only returns it to the inherited pool), any close without one."""
        if self.has_pool:
            return "close_pool" in self.fork_hook_calls
        return bool(self.fork_hook_calls & {"close_pool", "close_all", "close"})

    @property
    def has_pool(self) -> bool:
        return bool(self.pools)

    @property
    def pool_may_be_on(self) -> bool:
        """A pool is on, or the settings leave it unknown: checks that need a pool then ask
        (:attr:`pool_question`) rather than stay silent."""
        return self.has_pool or bool(self.settings.unknown_pools)

    @property
    def pool_question(self) -> str:
        """``""`` when a pool is on; else what a message says first when the pool is unknown:
        ``if the pool is on (mysite/settings.py:12: os.environ['DB_POOL'] has no default), ``."""
        if self.has_pool or not self.settings.unknown_pools:
            return ""
        alias = self.settings.unknown_pools[0]
        place = alias.pool_place or alias.place
        where = f"{place.file}:{place.line}: " if place else ""
        return f"if the pool is on ({where}{alias.because or 'scan cannot tell'}), "

    @property
    def forks_workers(self) -> bool:
        """Celery's default pool is prefork; gunicorn forks its workers."""
        return self.uses_celery or self.uses_gunicorn


@dataclasses.dataclass(frozen=True)
class FileFacts:
    """What one file adds to the project's facts: small, so that no syntax tree outlives the file
    it came from (the scan gathers these in parallel and combines them in path order)."""

    file: str
    settings_references: tuple[live.Reference, ...] = ()
    """Where this file names ``DJANGO_SETTINGS_MODULE``."""
    defines_databases: bool = False
    """A module whose text assigns ``DATABASES``: settings, if nothing names them."""
    servers: tuple[Served, ...] = ()
    preloads: tuple[Location, ...] = ()
    queries: tuple[Query, ...] = ()
    hook_calls: frozenset[str] = frozenset()
    url_imports: frozenset[str] = frozenset()
    workers: tuple[deployment.Workers, ...] = ()
    budgets: tuple[deployment.Budget, ...] = ()
    gunicorn_configs: tuple[deployment.GunicornConfig, ...] = ()
    celery_version: tuple[tuple[int, int], int] | None = None
    """The pinned (major, minor) and its line."""
    uses_celery: bool = False
    uses_gunicorn: bool = False
    discards_pool_in_child: bool = False
    gunicorn_fork_hook: bool = False
    functions: tuple[call_graph.FunctionSummary, ...] = ()
    runners: tuple[task_runners.Runner, ...] = ()


def gather(files: Sequence[SourceFile]) -> Facts:
    texts = {s.relative: (lambda s=s: s.text) for s in files if s.is_python}
    return combine((file_facts(source) for source in files), live.ProjectModules(texts))


def file_facts(source: SourceFile) -> FileFacts:
    """One file's share of the facts. Every question is asked of the text first: the module is
    parsed (``source.tree``) only when a word it needs is there."""
    return _python_facts(source) if source.is_python else _text_facts(source)


def _text_facts(source: SourceFile) -> FileFacts:
    text, lines = source.text, source.lines
    budgets: list[deployment.Budget] = []
    if "max_connections" in text or "max-connections" in text:
        budgets += deployment.budgets_in_text(source.path.name, source.relative, lines)
    preloads: list[Location] = []
    if "gunicorn" in text.lower() and "preload" in text:
        where = deployment.preloads_in_text(lines)
        preloads += [Location(source.relative, line) for line, _ in where]
    return FileFacts(
        file=source.relative,
        settings_references=live.references(source.relative, text, is_python=False),
        celery_version=_celery_version(text),
        uses_gunicorn="gunicorn" in text,
        servers=tuple(deployment.servers_in_text(source.path.name, source.relative, lines)),
        workers=tuple(deployment.workers_in_text(source.path.name, source.relative, lines)),
        budgets=tuple(budgets),
        preloads=tuple(preloads),
        runners=tuple(task_runners.in_text(source.path.name, source.relative, lines))
        if any(word in text for word in task_runners.WORDS)
        else (),
    )


def _python_facts(source: SourceFile) -> FileFacts:
    text, relative = source.text, source.relative
    queries: list[Query] = []
    if ("objects" in text or "connection" in text) and _APP_LOADED.search(relative):
        queries = _import_queries(source)
    servers: list[Served] = []
    if any(word in text for word in ("worker_class", "uvicorn", "hypercorn")) and source.tree:
        servers += deployment.servers_in_python(relative, source.tree)
    configs: list[deployment.GunicornConfig] = []
    # gunicorn_config reads only files named after gunicorn
    if ("workers" in text or "threads" in text) and "gunicorn" in relative and source.tree:
        config = deployment.gunicorn_config(relative, source.tree)
        configs += [config] if config else []
    preloads: list[Location] = []
    if "preload_app" in text and source.tree:
        where = deployment.preloads_in_python(source.tree)
        preloads = [Location(relative, line) for line, _ in where]
    url_imports: set[str] = set()
    if "urlpatterns" in text and source.tree:
        url_imports = _imported_modules(source.module_name, source.tree)
    discards = fork_hook = False
    hook_calls: set[str] = set()
    if "worker_process_init" in text and "close_pool" in text and source.tree:
        discards = _handler_calls(source.tree, {"worker_process_init"}, {"close_pool"})
    # A gunicorn post_fork hook may only call connections.close_all(): its name decides.
    if ("post_fork" in text or "post_worker_init" in text) and source.tree:
        fork_hook = _gunicorn_hook(source.tree)
        hook_calls = _gunicorn_hook_calls(source.tree)
    uses_celery = "celery" in text and source.tree is not None and _imports(source.tree, "celery")
    functions: list[call_graph.FunctionSummary] = []
    if call_graph.relevant(text) and source.tree:
        package = relative.endswith("__init__.py")
        functions = call_graph.summaries(source.tree, source.module_name, relative, package)
    return FileFacts(
        file=relative,
        settings_references=live.references(relative, text, is_python=True),
        defines_databases="DATABASES" in text and live.role(relative) is live.Role.SOURCE,
        servers=tuple(servers),
        preloads=tuple(preloads),
        queries=tuple(queries),
        hook_calls=frozenset(hook_calls),
        url_imports=frozenset(url_imports),
        gunicorn_configs=tuple(configs),
        uses_celery=uses_celery,
        uses_gunicorn="gunicorn" in text or relative.endswith("gunicorn.conf.py"),
        discards_pool_in_child=discards,
        gunicorn_fork_hook=fork_hook,
        functions=tuple(functions),
        runners=tuple(task_runners.in_python(relative, source.tree))
        if any(word in text for word in task_runners.WORDS) and source.tree
        else (),
    )


def combine(shares: Iterable[FileFacts], modules: live.ProjectModules) -> Facts:
    """The project's facts from each file's, in path order (the first Celery pin wins, and the
    first server and query found are the ones messages name), and its live settings evaluated
    over ``modules``."""
    references: list[live.Reference] = []
    defines_databases: list[str] = []
    servers: list[Served] = []
    preloads: list[Location] = []
    queries: list[Query] = []
    hook_calls: set[str] = set()
    url_imports: set[str] = set()
    workers: list[deployment.Workers] = []
    budgets: list[deployment.Budget] = []
    gunicorn_configs: list[deployment.GunicornConfig] = []
    uses_celery = uses_gunicorn = discards = fork_hook = False
    version: tuple[int, int] | None = None
    version_at: Location | None = None
    functions: list[tuple[call_graph.FunctionSummary, ...]] = []
    found_runners: list[task_runners.Runner] = []
    for share in shares:
        functions.append(share.functions)
        found_runners += share.runners
        if share.celery_version is not None and version is None:
            version, line = share.celery_version
            version_at = Location(share.file, line)
        references += share.settings_references
        defines_databases += [share.file] if share.defines_databases else []
        servers += share.servers
        preloads += share.preloads
        queries += share.queries
        hook_calls |= share.hook_calls
        url_imports |= share.url_imports
        workers += share.workers
        budgets += share.budgets
        gunicorn_configs += share.gunicorn_configs
        uses_celery = uses_celery or share.uses_celery
        uses_gunicorn = uses_gunicorn or share.uses_gunicorn
        discards = discards or share.discards_pool_in_child
        fork_hook = fork_hook or share.gunicorn_fork_hook
    settings = live.read_settings(references, defines_databases, modules)
    return Facts(
        pools=tuple(_located(a.pool_place or a.place) for a in settings.pools),
        settings=settings,
        uses_celery=uses_celery,
        celery_version=version,
        celery_version_at=version_at,
        discards_pool_in_child=discards,
        gunicorn_fork_hook=fork_hook,
        uses_gunicorn=uses_gunicorn,
        fork_hook_calls=frozenset(hook_calls),
        servers=tuple(servers),
        preloads=tuple(preloads),
        persistent=tuple(
            _located(a.conn_max_age.place)
            for a in settings.databases
            if a.conn_max_age is not None and a.conn_max_age.data != 0
        ),
        app_import_queries=tuple(queries),
        url_imports=frozenset(url_imports),
        workers=tuple(workers),
        budgets=tuple(budgets),
        gunicorn_configs=tuple(gunicorn_configs),
        calls=call_graph.combine(functions),
        runners=tuple(found_runners),
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
    for node in statements(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            return True
    return False


def _handler_calls(tree: ast.Module, signals: set[str], wanted: set[str]) -> bool:
    """A function connected to one of ``signals`` (``@sig.connect`` or ``sig.connect(f)``) whose
    body calls one of ``wanted``."""
    functions = {n.name: n for n in statements(tree) if isinstance(n, ast.FunctionDef)}
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


def _gunicorn_hook_calls(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in {"post_fork", "post_worker_init"}:
            found |= {last_name(c.func) for c in calls(node)}
    return found


def _located(place: Place | None) -> Location:
    return Location(place.file, place.line) if place else Location("?", 1)


def _import_queries(source: SourceFile) -> list[Query]:
    tree = source.tree
    if tree is None or ("objects" not in source.text and "connection" not in source.text):
        return []
    if "setup" in source.text and queries.calls_django_setup(tree):
        return []
    bodies = [tree.body]
    if "AppConfig" in source.text and "ready" in source.text:
        bodies += [r.body for r in queries.ready_methods(tree)]
    found: dict[int, Query] = {}
    for body in bodies:
        for node in queries.executed(body):
            query = queries.query(node)
            if query is not None and query.lineno not in found:
                text = queries.shorten(query)
                found[query.lineno] = Query(source.relative, query.lineno, text)
    return [found[line] for line in sorted(found)]


def _imported_modules(module: str, tree: ast.Module) -> set[str]:
    """Dotted names of the modules ``tree`` imports, relative imports resolved against
    ``module``; for ``from a import b`` both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    package = module.rsplit(".", 1)[0] if "." in module else ""
    found: set[str] = set()
    for node in statements(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(p for p in [*parts, base] if p)
            if base:
                found.add(base)
            found |= {f"{base}.{a.name}" if base else a.name for a in node.names}
    return found
