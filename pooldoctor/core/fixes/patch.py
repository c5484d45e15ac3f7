"""Rewrite a wrapper's ``def`` into the closest pattern that measured clean, in a copy.

The syntax tree says where to cut; the edits are made on the text, so everything the change does
not touch (comments, formatting, the rest of the file) stays as the project wrote it and the diff
shows only the change. Each rewrite is checked by reading the result again: it must parse and
have the closed shape.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pooldoctor.core.fixes import CannotPatch, shapes
from pooldoctor.core.fixes.source import Source, helper, of_function

# Where each name a patch may use comes from.
ORIGINS = {
    "async_to_sync": "asgiref.sync",
    "sync_to_async": "asgiref.sync",
    "ThreadSensitiveContext": "asgiref.sync",
    "close_old_connections": "django.db",
}
CLOSE = "close_old_connections()"
CLOSE_ON_THREAD = "await sync_to_async(close_old_connections)()"
# How deep to follow a decorator into the module's helpers it calls.
HELPER_DEPTH = 2


@dataclasses.dataclass(frozen=True)
class Patch:
    """A wrapper's definition rewritten into a pattern, and the file it belongs to."""

    pattern: str
    """The built-in mode whose pattern the rewrite follows."""
    shape: str
    """What the original did, in words."""
    source: Source
    function: str
    """The rewritten definition."""
    imports: tuple[str, ...]
    """Import statements the rewrite needs that the module does not have yet."""
    original_file: str
    patched_file: str
    first_line: int
    """The line of the rewritten definition in the patched file."""


def fit(source: Source, clean: Collection[str], root: str | Path) -> Patch:
    """Rewrite the wrapper into the closest of its shape's patterns among ``clean`` (the built-in
    modes that measured clean in this run)."""
    source, shape = _find_shape(source, root, HELPER_DEPTH)
    if shape.closed:
        raise CannotPatch(
            f"{source.function}() already {shape.words}: pooldoctor has no smaller change to "
            "make to it"
        )
    fitting = [p for p in shape.patterns if p in clean]
    if not fitting:
        tried = ", ".join(shape.patterns)
        raise CannotPatch(
            f"{source.function}() {shape.words}; the pattern that fits it ({tried}) did not "
            "measure clean in this run"
        )
    pattern = fitting[0]
    text, names = rewrite(source.text, shape, pattern, source.namespace)
    imports = needed_imports(names, source.namespace)
    original = source.path.read_text()
    patched, first_line = patch_file(original, source, text, imports)
    return Patch(
        pattern=pattern,
        shape=f"{source.function}() {shape.words}",
        source=source,
        function=text,
        imports=tuple(f"from {module} import {name}" for module, name in imports),
        original_file=original,
        patched_file=patched,
        first_line=first_line,
    )


def _find_shape(source: Source, root: str | Path, depth: int) -> tuple[Source, shapes.Shape]:
    tree = ast.parse(source.text)
    shape = shapes.find(tree, source.namespace)
    if shape is not None:
        return source, shape
    if depth > 0:
        for call in shapes.calls(tree):
            name = shapes.dotted(call.func)
            if name is None or name == source.function:
                continue
            function = helper(source.namespace, name, source.module)
            if function is not None:
                try:
                    return _find_shape(of_function(function, root), root, depth - 1)
                except CannotPatch:
                    continue
    raise CannotPatch(
        f"no asyncio.run(), run_until_complete() or async_to_sync() call found in "
        f"{source.function}() ({source.relative}:{source.first_line})"
    )


def rewrite(
    text: str, shape: shapes.Shape, pattern: str, namespace: dict[str, Any]
) -> tuple[str, list[str]]:
    """The definition rewritten into ``pattern``, and the names the new code uses."""
    if shape.kind == shapes.CONTEXT:
        text = close_in_context(text, shape)
        names = ["sync_to_async", "close_old_connections"]
    elif pattern == "async-to-sync":
        names = []
        if shape.kind == shapes.RUN:
            text = run_to_async_to_sync(text, shape)
            names.append("async_to_sync")
            shape = _reread(text, namespace, shapes.ASYNC_TO_SYNC)
        text, closed = close_after(text, shape)
        if closed:
            names.append("close_old_connections")
    elif pattern == "thread-sensitive-context-closed" and shape.kind == shapes.RUN:
        text = run_in_closed_context(text, shape, namespace)
        names = ["ThreadSensitiveContext", "sync_to_async", "close_old_connections"]
    else:  # pragma: no cover - PATTERNS and this function name the same pairs
        raise CannotPatch(f"no rewrite of the {shape.kind} shape into {pattern}")
    final = _reread(text, namespace, None)
    if not final.closed:  # pragma: no cover - a rewrite that does not close is a bug here
        raise CannotPatch(f"the rewrite into {pattern} did not close the connection")
    return text, names


def _reread(text: str, namespace: dict[str, Any], kind: str | None) -> shapes.Shape:
    try:
        shape = shapes.find(ast.parse(text), namespace)
    except SyntaxError as exc:  # pragma: no cover - a rewrite that does not parse is a bug here
        raise CannotPatch(f"the rewritten code does not parse: {exc}") from None
    if shape is None or (kind is not None and shape.kind != kind):  # pragma: no cover
        raise CannotPatch("the rewritten code lost the call that runs the task")
    return shape


def run_to_async_to_sync(text: str, shape: shapes.Shape) -> str:
    """``asyncio.run(func(ARGS))`` -> ``async_to_sync(func)(ARGS)``."""
    inner = shape.call.args[0]
    assert isinstance(inner, ast.Call)
    func = segment(text, inner.func)
    arguments = between(text, end(inner.func), end(inner))
    return splice(text, start(shape.call), end(shape.call), f"async_to_sync({func}){arguments}")


def close_after(text: str, shape: shapes.Shape) -> tuple[str, bool]:
    """``close_old_connections()`` in a ``finally`` around the statement: added to the ``try``
    it is already in, or a new one. Returns the text and whether a call was added."""
    around = shapes.enclosing_try(shape.statement, shape.parents)
    if around is not None:
        if shapes.calls_named(around.finalbody, "close_old_connections"):
            return text, False
        return append_to(text, around.finalbody, CLOSE), True
    return wrap_in_try(text, [shape.statement], CLOSE), True


def close_in_context(text: str, shape: shapes.Shape) -> str:
    """``await sync_to_async(close_old_connections)()`` in a ``finally`` inside the context."""
    assert shape.context is not None
    body = shape.context.body
    if len(body) == 1 and isinstance(body[0], ast.Try) and body[0].finalbody:
        return append_to(text, body[0].finalbody, CLOSE_ON_THREAD)
    return wrap_in_try(text, body, CLOSE_ON_THREAD)


def run_in_closed_context(text: str, shape: shapes.Shape, namespace: dict[str, Any]) -> str:
    """``asyncio.run(func(ARGS))`` -> ``asyncio.run(in_context())``, with ``in_context`` defined
    just before: the task in its own ``ThreadSensitiveContext``, closed on the context's
    thread."""
    inner = shape.call.args[0]
    tree = ast.parse(text)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    name = next(
        n for n in ("in_context", "_in_context", "_pooldoctor_in_context") if n not in taken
    )
    task = ast.unparse(inner)
    statement = shape.statement
    indent = leading(text, statement.lineno)
    unit = indent_unit(text)
    helper_lines = [
        f"async def {name}():",
        f"{unit}async with ThreadSensitiveContext():",
        f"{unit * 2}try:",
        f"{unit * 3}return await {task}",
        f"{unit * 2}finally:",
        f"{unit * 3}{CLOSE_ON_THREAD}",
        "",
    ]
    text = splice(text, start(inner), end(inner), f"{name}()")
    lines = text.splitlines(keepends=True)
    block = [f"{indent}{line}\n" if line else "\n" for line in helper_lines]
    lines[statement.lineno - 1 : statement.lineno - 1] = block
    return "".join(lines)


def append_to(text: str, body: list[ast.stmt], code: str) -> str:
    """A statement after the last of ``body``, at its indentation."""
    lines = text.splitlines(keepends=True)
    indent = leading(text, body[0].lineno)
    last = body[-1].end_lineno or body[-1].lineno
    lines.insert(last, f"{indent}{code}\n")
    return "".join(lines)


def wrap_in_try(text: str, body: list[ast.stmt], final: str) -> str:
    """``try:`` the statements of ``body`` (consecutive lines), ``finally: final``."""
    lines = text.splitlines(keepends=True)
    first = body[0].lineno
    last = body[-1].end_lineno or body[-1].lineno
    indent = leading(text, first)
    unit = indent_unit(text)
    moved = [unit + line if line.strip() else line for line in lines[first - 1 : last]]
    lines[first - 1 : last] = [
        f"{indent}try:\n",
        *moved,
        f"{indent}finally:\n",
        f"{indent}{unit}{final}\n",
    ]
    return "".join(lines)


def needed_imports(names: list[str], namespace: dict[str, Any]) -> list[tuple[str, str]]:
    """``(module, name)`` for each name the module does not bind yet; a name it binds to something
    else cannot be used."""
    needed: list[tuple[str, str]] = []
    for name in dict.fromkeys(names):
        module = ORIGINS[name]
        expected = getattr(importlib.import_module(module), name)
        if name not in namespace:
            needed.append((module, name))
        elif namespace[name] is not expected:
            raise CannotPatch(f"its module binds {name} to something other than {module}.{name}")
    return needed


def patch_file(
    original: str, source: Source, function: str, imports: list[tuple[str, str]]
) -> tuple[str, int]:
    """The file with the definition replaced and the imports added (to an existing one-line
    ``from MODULE import ...`` of the same module, else after the last import above the
    definition). Returns the text and the definition's new first line."""
    lines = original.splitlines(keepends=True)
    count = len(source.text.splitlines())
    at = source.first_line - 1
    if "".join(lines[at : at + count]) != source.text:
        raise CannotPatch(f"{source.relative} changed on disk since the project was imported")
    lines[at : at + count] = function.splitlines(keepends=True)
    tree = ast.parse(original)
    above = [
        n
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom) and (n.end_lineno or 0) < source.first_line
    ]
    new: list[str] = []
    for module in dict.fromkeys(m for m, _ in imports):
        names = [n for m, n in imports if m == module]
        same = next((n for n in above if _one_line_from(n, module, lines, original)), None)
        if same is not None:
            spelled = [a.name + (f" as {a.asname}" if a.asname else "") for a in same.names]
            merged = spelled + names
            if spelled == sorted(spelled):
                merged.sort()
            lines[same.lineno - 1] = f"from {module} import {', '.join(merged)}\n"
        else:
            new.append(f"from {module} import {', '.join(names)}\n")
    added = _insert_imports(lines, tree, above, new)
    return "".join(lines), source.first_line + added


def _one_line_from(node: ast.stmt, module: str, lines: list[str], original: str) -> bool:
    """``node`` is ``from MODULE import a, b`` alone on its line (no comment to keep)."""
    return (
        isinstance(node, ast.ImportFrom)
        and node.module == module
        and node.level == 0
        and node.lineno == node.end_lineno
        and lines[node.lineno - 1].strip() == ast.get_source_segment(original, node)
    )


def _insert_imports(
    lines: list[str], tree: ast.Module, above: Sequence[ast.stmt], new: list[str]
) -> int:
    """Put ``new`` (third-party ``from`` imports) where isort would: sorted among the ``from``
    imports of the last block of third-party imports above the definition, else as a block of
    their own after the last import. Returns how many lines were added."""
    if not new:
        return 0
    third_party = [n for n in above if not _stdlib(n)]
    if not third_party:
        at = (above[-1].end_lineno or 0) if above else _after_docstring(tree)
        added = (["\n"] if above else []) + sorted(new)
        lines[at:at] = added
        return len(added)
    block = [third_party[-1]]
    for node in reversed(third_party[:-1]):  # the imports on consecutive lines before it
        if (node.end_lineno or 0) + 1 != block[0].lineno:
            break
        block.insert(0, node)
    positions = []
    for line in new:
        module = line.split()[1]
        later = [n for n in block if isinstance(n, ast.ImportFrom) and _module(n) > module]
        positions.append((later[0].lineno - 1 if later else block[-1].end_lineno or 0, line))
    # From the bottom up, so each position is still the original file's.
    for at, line in sorted(positions, reverse=True):
        lines.insert(at, line)
    return len(new)


def _module(node: ast.stmt) -> str:
    if isinstance(node, ast.ImportFrom):
        return node.module or ""
    assert isinstance(node, ast.Import)
    return node.names[0].name


def _stdlib(node: ast.stmt) -> bool:
    top = _module(node).split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__" or not top


def _after_docstring(tree: ast.Module) -> int:
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno or first.lineno
    return 0


# Positions: ast columns count UTF-8 bytes.


def start(node: ast.expr) -> tuple[int, int]:
    return node.lineno, node.col_offset


def end(node: ast.expr) -> tuple[int, int]:
    assert node.end_lineno is not None and node.end_col_offset is not None
    return node.end_lineno, node.end_col_offset


def _index(lines: list[str], position: tuple[int, int]) -> int:
    line, column = position
    before = sum(len(text) for text in lines[: line - 1])
    return before + len(lines[line - 1].encode()[:column].decode())


def between(text: str, first: tuple[int, int], last: tuple[int, int]) -> str:
    lines = text.splitlines(keepends=True)
    return text[_index(lines, first) : _index(lines, last)]


def segment(text: str, node: ast.expr) -> str:
    found = ast.get_source_segment(text, node)
    assert found is not None  # parsed from this text: positions are known
    return found


def splice(text: str, first: tuple[int, int], last: tuple[int, int], new: str) -> str:
    lines = text.splitlines(keepends=True)
    return text[: _index(lines, first)] + new + text[_index(lines, last) :]


def leading(text: str, lineno: int) -> str:
    line = text.splitlines()[lineno - 1]
    return line[: len(line) - len(line.lstrip())]


def indent_unit(text: str) -> str:
    """The function's own indentation step (its body's indent; the def is at column 0)."""
    tree = ast.parse(text)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
    return leading(text, function.body[0].lineno) or "    "
