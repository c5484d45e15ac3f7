"""The package's layout, read from its syntax trees: no import cycle inside pooldoctor/, and a
host's library (celery, kombu, gunicorn...) imported only in modules whose path names that host.

Every ``import`` counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (never run). String templates of user code (a printed fix) are not imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pooldoctor
from pooldoctor.hosts import all_hosts, get_host, host_for

PACKAGE = Path(pooldoctor.__file__).parent

# Top-level name of an imported module -> the host that must name the importing module's path.
HOST_LIBRARIES = {
    "celery": "celery",
    "kombu": "celery",
    "billiard": "celery",
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "daphne": "daphne",
    "dramatiq": "dramatiq",
    "django_dramatiq": "dramatiq",
    "rq": "rq",
    "django_rq": "rq",
    "huey": "huey",
    "django_tasks": "tasks",
    "django_tasks_db": "tasks",
    "django_tasks_db_async": "tasks",
    "django_q": "django_q",
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is a module of pooldoctor (a file or a package), without importing it."""
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").is_file() or (
        root / relative / "__init__.py"
    ).is_file()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, root: Path = PACKAGE) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, module, names)`` for every import that runs: ``import a.b`` is ``("a.b", [])``,
    ``from a import b, c`` is ``("a", ["b", "c"])``; relative imports are made absolute (``root``:
    the pooldoctor package the file is in)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                yield from walk(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, [alias.name for alias in node.names]
        for child in ast.iter_child_nodes(node):
            yield from walk(child)

    yield from walk(tree)


def sources() -> list[Path]:
    """pooldoctor's modules (not the demo projects under pooldoctor/demo: package data, a
    project's code, never imported by pooldoctor)."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "demo")


def import_graph() -> dict[str, set[str]]:
    """pooldoctor module -> the pooldoctor modules it imports explicitly (``from pooldoctor.x import
    name`` is an edge to ``pooldoctor.x.name`` when that is a module, else to ``pooldoctor.x``)."""
    graph: dict[str, set[str]] = {}
    for path in sources():
        edges = graph.setdefault(module_name(path), set())
        for _, module, names in imports(path):
            if module != "pooldoctor" and not module.startswith("pooldoctor."):
                continue
            targets = [f"{module}.{n}" for n in names if is_module(f"{module}.{n}")]
            if len(targets) < len(names) or not names:
                targets.append(module)
            edges.update(t for t in targets if is_module(t))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        stack = [iter(sorted(graph.get(root, ())))]
        state[root] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return [*path[path.index(following) :], following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "pooldoctor" / "reporters" / "example.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pooldoctor.commands import simulate\n"
        "def render():\n"
        "    from . import github\n"
        "    import kombu.connection\n"
        "FIX = 'from celery.signals import worker_process_init'\n"
    )
    found = [(module, names) for _, module, names in imports(source, tmp_path / "pooldoctor")]
    assert found == [("typing", ["TYPE_CHECKING"]), ("pooldoctor.reporters", ["github"]),
                     ("kombu.connection", [])]  # fmt: skip


def test_find_cycle_names_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_pooldoctor() -> None:
    graph = import_graph()
    assert "pooldoctor.hosts.celery.install" in graph["pooldoctor.celery"]  # resolution works
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_a_host_library_is_imported_only_where_the_path_names_the_host() -> None:
    offending = []
    for path in sources():
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        for line, module, _ in imports(path):
            host = HOST_LIBRARIES.get(module.partition(".")[0])
            if host is not None and host not in parts:
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{line} import {module}")
    assert offending == [], "a host's library imported outside its host's modules:\n" + "\n".join(
        offending
    )


def test_every_host_lives_in_a_module_named_after_it() -> None:
    hosts = all_hosts()
    assert (hosts[0].name, hosts[-1].name) == ("celery", "inprocess")
    for host in hosts:
        assert f"hosts.{host.name}" in type(host).__module__
        assert get_host(host.name) is host
    with pytest.raises(LookupError, match="unknown host 'nope'"):
        get_host("nope")


def test_host_for_picks_celery_for_a_task_and_inprocess_for_a_function() -> None:
    from celery import Celery

    app = Celery("layout", set_as_current=False)

    def refresh(x: int) -> int:
        return x

    async def later() -> None:
        pass

    task = app.task(name="layout.refresh")(refresh)
    assert host_for(task).name == "celery"
    assert host_for(refresh).name == "inprocess"
    assert host_for(later).name == "inprocess"
    with pytest.raises(LookupError):
        host_for(Celery)  # a class: no host runs it


def test_importing_the_registry_imports_no_host_library() -> None:
    # A fresh interpreter: this one has celery loaded by other tests.
    code = (
        "import sys, pooldoctor.hosts\n"
        "print(sorted(m for m in ('celery', 'kombu', 'billiard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
