"""Which of the project's functions call which, summarised without keeping syntax trees.

A check about a coroutine or a thread must judge the code that actually runs there: the coroutine
``asyncio.run`` is given, the function ``sync_to_async`` is given, and what they call, in the same
module or imported from another one (``from .services import sync_orders``). Pass 1 of the scan
keeps a :class:`FunctionSummary` per function of each module whose text may matter (a few names
and flags, never a tree), and :func:`combine` joins them into a :class:`CallGraph` that pass 2
follows to a bounded depth.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import sys
from collections.abc import Iterable, Iterator, Mapping

from pooldoctor.scan.syntax import (
    ASYNC_ORM_METHODS,
    FunctionNode,
    dotted,
    is_cleanup_call,
    is_false,
    keyword,
    last_name,
    statements,
    uses_sync_orm,
)

DEPTH = 4
"""How many calls deep the checks follow: a task's coroutine, what it awaits, and so on."""
# Calls into these are never the project's own code.
_FOREIGN = frozenset(sys.stdlib_module_names) | {"django", "celery", "asgiref", "channels"}
_OFFLOADERS = frozenset({"sync_to_async", "database_sync_to_async"})
# The modules summarised: coroutines, sync_to_async, and connection cleanup. Summarising every
# module that uses the ORM ("objects") would parse most of a project in pass 1 and double its
# time; a synchronous helper in a module without these words is not followed (a miss, never a
# false finding: what is not found is not flagged).
_WORDS = ("async", "close_all", "close_old_connections", "connection.close")


@dataclasses.dataclass(frozen=True)
class FunctionSummary:
    """One function or method: what it does to the database itself, and whom it calls."""

    name: str
    """Qualified: ``mysite.services.sync_orders``, ``mysite.tasks.Sync.run``, and for a nested
    function ``mysite.tasks.refresh.main``."""
    file: str
    line: int
    async_orm: str = ""
    """The first async ORM use in its own body (``Order.objects.aget``), else empty."""
    async_orm_line: int = 0
    sync_orm: str = ""
    """The first synchronous ORM use (``Order.objects``), else empty."""
    sync_orm_line: int = 0
    closes: str = ""
    """Where it closes its own thread's connections (``connections.close_all()``...):
    ``"finally"``, ``"body"`` (only when it gets there), or empty."""
    cleans_executor: bool = False
    """It awaits ``sync_to_async(close_old_connections)()``."""
    thread_sensitive_context: bool = False
    callees: tuple[str, ...] = ()
    """Qualified names of what it calls that may be the project's own functions."""
    offloaded: tuple[str, ...] = ()
    """Functions it hands to a thread-sensitive ``sync_to_async``: they run on the executor."""

    @property
    def short(self) -> str:
        return f"{self.name.rpartition('.')[2]}()"


@dataclasses.dataclass(frozen=True)
class Reach:
    """A path from where a check starts to a database use."""

    path: tuple[FunctionSummary, ...]
    what: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path[-1].file}:{self.line}"

    @property
    def via(self) -> str:
        """``main() → load()``."""
        return " → ".join(f.short for f in self.path)


class CallGraph:
    """Every summarised function of the project, by qualified name."""

    def __init__(
        self, functions: Mapping[str, FunctionSummary] | None = None, base: CallGraph | None = None
    ) -> None:
        self.functions: Mapping[str, FunctionSummary] = functions or {}
        self.base = base
        self._suffixes: dict[str, str | None] | None = None

    def __len__(self) -> int:
        return len(self.functions) + (len(self.base) if self.base else 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallGraph):
            return NotImplemented
        return dict(self.functions) == dict(other.functions) and self.base == other.base

    def __hash__(self) -> int:
        return hash(len(self))

    def __repr__(self) -> str:
        return f"CallGraph({len(self)} functions)"

    def with_functions(self, extra: Iterable[FunctionSummary]) -> CallGraph:
        """This graph with ``extra`` (the module a check reads, summarised afresh) laid over it."""
        return CallGraph({f.name: f for f in extra}, base=self)

    def get(self, name: str) -> FunctionSummary | None:
        """By qualified name, or by a unique tail of one: a project scanned from above its import
        root names ``src.mysite.services.load`` what its imports call ``mysite.services.load``."""
        found = self.functions.get(name)
        if found is None and self.base is not None:
            return self.base.get(name)
        if found is not None or "." not in name:
            return found
        if self._suffixes is None:
            self._suffixes = {}
            for key in self.functions:
                parts = key.split(".")
                for start in range(1, len(parts) - 1):
                    tail = ".".join(parts[start:])
                    self._suffixes[tail] = None if tail in self._suffixes else key
        full = self._suffixes.get(name)
        return self.functions.get(full) if full else None

    def reaches_async_orm(self, roots: Iterable[str], depth: int = DEPTH) -> Reach | None:
        """The shortest path from ``roots`` to async ORM use: an async ORM method, ``async for``
        over a queryset, or a thread-sensitive ``sync_to_async`` of ORM code."""
        return self._search(roots, depth, sync=False)

    def reaches_sync_orm(self, roots: Iterable[str], depth: int = DEPTH) -> Reach | None:
        """The shortest path from ``roots`` (run on some thread) to synchronous ORM use."""
        return self._search(roots, depth, sync=True)

    def reached(self, roots: Iterable[str], depth: int = DEPTH) -> list[FunctionSummary]:
        """Every summarised function ``roots`` call, to ``depth``, the roots included."""
        seen: dict[str, FunctionSummary] = {}
        pending = collections.deque((name, 0) for name in roots)
        while pending:
            name, level = pending.popleft()
            summary = self.get(name)
            if summary is None or summary.name in seen:
                continue
            seen[summary.name] = summary
            if level < depth:
                pending.extend((c, level + 1) for c in (*summary.callees, *summary.offloaded))
        return list(seen.values())

    def _search(self, roots: Iterable[str], depth: int, sync: bool) -> Reach | None:
        start = [(name, sync, ()) for name in roots]
        pending: collections.deque[tuple[str, bool, tuple[FunctionSummary, ...]]]
        pending = collections.deque(start)
        seen: set[tuple[str, bool]] = set()
        while pending:
            name, on_thread, path = pending.popleft()
            summary = self.get(name)
            if summary is None or (summary.name, on_thread) in seen:
                continue
            seen.add((summary.name, on_thread))
            here = (*path, summary)
            if on_thread and summary.sync_orm:
                return Reach(here, summary.sync_orm, summary.sync_orm_line)
            if not on_thread and summary.async_orm:
                return Reach(here, summary.async_orm, summary.async_orm_line)
            if len(here) > depth:
                continue
            pending.extend((c, on_thread, here) for c in summary.callees)
            if not on_thread:
                pending.extend((c, True, here) for c in summary.offloaded)
        return None


def combine(shares: Iterable[Iterable[FunctionSummary]]) -> CallGraph:
    functions: dict[str, FunctionSummary] = {}
    for share in shares:
        for summary in share:
            functions.setdefault(summary.name, summary)
    return CallGraph(functions)


def relevant(text: str) -> bool:
    """Whether a module's text may hold a function worth summarising (asked before parsing)."""
    return any(word in text for word in _WORDS)


def summaries(tree: ast.Module, module: str, file: str, package: bool) -> list[FunctionSummary]:
    """A summary per function of the module: top-level ones, methods, and functions nested in
    them. ``package``: the module is a package's ``__init__``."""
    return list(Resolver(tree, module, package).summaries(file))


class Resolver:
    """Turns the names a module calls into qualified names, through its imports."""

    def __init__(self, tree: ast.Module, module: str, package: bool) -> None:
        self.tree = tree
        self.module = module
        self.package = module if package else module.rpartition(".")[0]
        self.imports: dict[str, str] = {}
        self.defined: set[str] = set()
        self.seen: dict[ast.AST, tuple[str, str | None, Mapping[str, str]]] = {}
        """Each summarised function's qualified name, class and names in scope."""
        self.graph = CallGraph()
        for node in tree.body:
            if isinstance(node, FunctionNode | ast.ClassDef):
                self.defined.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                self._add_import(node)
        for inner in statements(tree):  # imports inside functions count as well
            if isinstance(inner, ast.Import | ast.ImportFrom) and inner not in tree.body:
                self._add_import(inner)

    def _add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    self.imports.setdefault(head, head)
            return
        base = node.module or ""
        if node.level:
            parts = self.package.split(".") if self.package else []
            parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            base = ".".join(p for p in [*parts, base] if p)
        for alias in node.names:
            if alias.name != "*":
                self.imports[alias.asname or alias.name] = (
                    f"{base}.{alias.name}" if base else alias.name
                )

    def resolve(self, node: ast.AST, cls: str | None, scope: Mapping[str, str]) -> str | None:
        """The qualified name of what ``node`` (a call's function) names, if it may be the
        project's: a function nested in scope, of this module, a method through
        ``self``/``cls``, or an imported name."""
        name = dotted(node) if isinstance(node, ast.Name | ast.Attribute) else ""
        if not name:
            return None
        head, _, rest = name.partition(".")
        tail = f".{rest}" if rest else ""
        if head in scope:
            return scope[head] + tail
        if head in {"self", "cls"} and cls and rest and "." not in rest:
            return f"{self.module}.{cls}.{rest}"
        if head in self.defined:
            return f"{self.module}.{name}"
        target = self.imports.get(head)
        if target is None or target.partition(".")[0] in _FOREIGN:
            return None
        return target + tail

    def summaries(self, file: str) -> Iterator[FunctionSummary]:
        for node in self.tree.body:
            if isinstance(node, FunctionNode):
                yield from self.summarise(node, f"{self.module}.{node.name}", file, None, {})
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, FunctionNode):
                        name = f"{self.module}.{node.name}.{item.name}"
                        yield from self.summarise(item, name, file, node.name, {})

    def summarise(
        self,
        function: FunctionNode,
        name: str,
        file: str,
        cls: str | None,
        scope: Mapping[str, str],
    ) -> Iterator[FunctionSummary]:
        """``function``'s summary, then those of the functions nested in it."""
        nodes = own_nodes(function)
        nested = sorted((n for n in nodes if isinstance(n, FunctionNode)), key=lambda n: n.lineno)
        scope = {**scope, **{n.name: f"{name}.{n.name}" for n in nested}}
        self.seen[function] = (name, cls, scope)
        yield self._summary(function, nodes, name, file, cls, scope)
        for inner in nested:
            yield from self.summarise(inner, f"{name}.{inner.name}", file, cls, scope)

    def summarise_expression(
        self, node: ast.expr, name: str, file: str, cls: str | None, scope: Mapping[str, str]
    ) -> FunctionSummary:
        """A summary of one expression, as if it were a function's body: what
        ``asyncio.run(...)`` is given (``main()``, ``Order.objects.aget(pk=1)``)."""
        body = ast.Module(body=[ast.Expr(value=node)], type_ignores=[])
        summary = self._summary(body, own_nodes(body), name, file, cls, scope)
        return dataclasses.replace(summary, line=getattr(node, "lineno", 0))

    def _summary(
        self,
        function: FunctionNode | ast.Module,
        nodes: list[ast.AST],
        name: str,
        file: str,
        cls: str | None,
        scope: Mapping[str, str],
    ) -> FunctionSummary:
        async_orm, async_line = "", 0
        sync_orm, sync_line = "", 0
        closes = ""
        cleans = context = False
        found_calls: list[ast.Call] = []
        for node in nodes:
            kind = type(node)
            if kind is ast.Call:
                found_calls.append(node)  # type: ignore[arg-type]
            elif kind is ast.Attribute:
                assert isinstance(node, ast.Attribute)
                if node.attr in ASYNC_ORM_METHODS and (not async_orm or node.lineno < async_line):
                    async_orm, async_line = dotted(node) or node.attr, node.lineno
                if (not sync_orm or node.lineno < sync_line) and _sync_orm_attribute(node):
                    sync_orm, sync_line = dotted(node), node.lineno
            elif kind is ast.AsyncFor:
                assert isinstance(node, ast.AsyncFor)
                iterated = dotted(node.iter)
                if ".objects" in f".{iterated}" and (not async_orm or node.lineno < async_line):
                    async_orm, async_line = f"async for over {iterated}", node.lineno
            elif kind is ast.AsyncWith:
                assert isinstance(node, ast.AsyncWith)
                names = {last_name(item.context_expr) for item in node.items}
                context = context or "ThreadSensitiveContext" in names
        callees: dict[str, None] = {}
        offloaded: dict[str, None] = {}
        finally_nodes: set[ast.AST] | None = None
        found_calls.sort(key=lambda c: (c.lineno, c.col_offset))
        for node in found_calls:
            if is_cleanup_call(node):
                if isinstance(node.func, ast.Call):
                    cleans = True
                elif closes != "finally":
                    if finally_nodes is None:
                        finally_nodes = _finally_nodes(function)
                    closes = "finally" if node in finally_nodes else "body"
            if last_name(node.func) in _OFFLOADERS and node.args:
                if is_false(keyword(node, "thread_sensitive")):
                    continue  # the loop's default executor: PD305's
                what = offloaded_orm(node.args[0])
                if what and (not async_orm or node.lineno < async_line):
                    async_orm, async_line = f"sync_to_async({what})", node.lineno
                target = self.resolve(node.args[0], cls, scope)
                if target:
                    offloaded[target] = None
                continue
            target = self.resolve(node.func, cls, scope)
            if target and target != name:
                callees[target] = None
        decorated = not isinstance(function, ast.Module) and _offloaded_by_decorator(function)
        if sync_orm and not async_orm and decorated:
            async_orm, async_line = f"sync_to_async({sync_orm})", sync_line
        return FunctionSummary(
            name=name,
            file=file,
            line=getattr(function, "lineno", 0),
            async_orm=async_orm,
            async_orm_line=async_line,
            sync_orm=sync_orm,
            sync_orm_line=sync_line,
            closes=closes,
            cleans_executor=cleans,
            thread_sensitive_context=context,
            callees=tuple(callees),
            offloaded=tuple(offloaded),
        )


def own_nodes(function: ast.AST) -> list[ast.AST]:
    """The nodes of ``function``'s body (in no particular order), not descending into nested
    functions or classes (the nested ones themselves are included), nor into annotations and
    ``Load()``/``Store()`` contexts."""
    found: list[ast.AST] = []
    pending: list[ast.AST | None] = list(getattr(function, "body", []))
    while pending:
        node = pending.pop()
        if node is None:  # a dict display's ``**mapping`` has no key
            continue
        found.append(node)
        if isinstance(node, _OPAQUE):
            continue
        for field in node._fields:
            if field in _NOT_CODE:
                continue
            value = getattr(node, field, None)
            if type(value) is list:
                if value and not isinstance(value[0], str):  # Global's names are strings
                    pending.extend(value)
            elif isinstance(value, ast.AST):
                pending.append(value)
    return found


_OPAQUE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Name, ast.Constant)
_NOT_CODE = frozenset({"ctx", "annotation", "returns", "type_comment", "type_params"})


def offloaded_orm(node: ast.expr) -> str:
    """How to name ORM code handed to ``sync_to_async`` inline (``Order.objects.get``, a lambda
    using the ORM, ``partial`` of either), else empty."""
    if isinstance(node, ast.Call) and last_name(node.func) == "partial" and node.args:
        return offloaded_orm(node.args[0])
    if isinstance(node, ast.Lambda):
        return "a lambda using the ORM" if uses_sync_orm(node.body) else ""
    if isinstance(node, ast.Attribute) and uses_sync_orm(node):
        return dotted(node)
    return ""


def _sync_orm_attribute(node: ast.Attribute) -> bool:
    """:func:`pooldoctor.scan.syntax.uses_sync_orm`'s test of one attribute."""
    attr = node.attr
    if attr == "objects":
        return True
    if attr in {"save", "delete", "refresh_from_db"}:
        return not isinstance(node.value, ast.Constant)
    if attr in {"atomic", "cursor", "all"}:
        return dotted(node) in {"transaction.atomic", "connection.cursor", "connections.all"}
    return False


def _offloaded_by_decorator(function: FunctionNode) -> bool:
    """``@sync_to_async`` or ``@sync_to_async()`` (thread-sensitive) on the function."""
    for decorator in function.decorator_list:
        if last_name(decorator) in _OFFLOADERS:
            call = decorator if isinstance(decorator, ast.Call) else None
            if call is None or not is_false(keyword(call, "thread_sensitive")):
                return True
    return False


def _finally_nodes(function: FunctionNode | ast.Module) -> set[ast.AST]:
    """The nodes inside a ``finally`` block of ``function`` (its own, not nested functions')."""
    inside: set[ast.AST] = set()
    for node in own_nodes(function):
        if isinstance(node, ast.Try | ast.TryStar):
            for statement in node.finalbody:
                inside.add(statement)
                inside.update(own_nodes(ast.Module(body=[statement], type_ignores=[])))
    return inside


def module_graph(tree: ast.Module, module: str, file: str, base: CallGraph) -> Resolver:
    """A resolver for the module a check reads, its functions (nested ones too) summarised
    afresh and laid over ``base``: ``resolver.graph``."""
    resolver = Resolver(tree, module, file.endswith("__init__.py"))
    resolver.graph = base.with_functions(resolver.summaries(file))
    return resolver


def short_code(node: ast.AST, limit: int = 40) -> str:
    """``main()``, ``_refresh(order_id)``; long expressions as ``name(...)``."""
    text = ast.unparse(node)
    if len(text) <= limit:
        return text
    return f"{dotted(node)}(...)" if isinstance(node, ast.Call) else text[: limit - 3] + "..."
