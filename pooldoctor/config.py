"""``[tool.pooldoctor]`` in the project's pyproject.toml: found as ruff and pytest find theirs,
read once, checked key by key, every failure one line.

The table is the one in the nearest pyproject.toml that has it, from the current directory
upward, stopping at the repository's top (a folder with ``.git``) or the filesystem root; a
pyproject.toml without the table (a sub-package's) does not hide the project's. Paths in it
(``exclude`` globs) are relative to the folder of that pyproject.toml.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Any

from pooldoctor.errors import UsageError

STRINGS = "a list of strings"
KEYS = {
    "wrappers": STRINGS,  # check, simulate: the project's --wrapper specs
    "select": STRINGS,  # scan --select
    "ignore": STRINGS,  # scan --ignore
    "exclude": STRINGS,  # scan --exclude, globs relative to the pyproject.toml's folder
    "max-file-size": "a size (bytes, or a string such as 500k or 2M)",  # scan --max-file-size
}
"""Every key pooldoctor reads, and what its value must be."""


def tool_config(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The nearest pyproject.toml with a ``[tool.pooldoctor]`` table, from ``directory`` upward,
    and that table, its keys checked (``directory``'s pyproject.toml and an empty table when
    there is none)."""
    start = Path(os.path.abspath(directory))
    for folder in (start, *start.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            table = _table(path)
            if table is not None:
                _validate(path, table)
                return path, table
        if (folder / ".git").exists():
            break  # the repository's top: a pyproject.toml above it belongs to something else
    return start / "pyproject.toml", {}


def config_list(directory: Path, key: str) -> list[str]:
    """A list of strings from ``[tool.pooldoctor]`` (checked when read), empty when absent."""
    return list(tool_config(directory)[1].get(key, []))


def config_globs(directory: Path, key: str) -> list[str]:
    """Globs of ``[tool.pooldoctor]``, written relative to its pyproject.toml's folder, made
    relative to ``directory`` (a folder at or under it: where the command runs)."""
    path, table = tool_config(directory)
    return rebase_globs(table.get(key, []), path.parent, directory)


def rebase_globs(patterns: list[str], base: Path, root: Path) -> list[str]:
    """The globs ``patterns`` (relative to ``base``) as globs relative to ``root`` under it, for
    matching paths under ``root``. A glob without a slash matches a name anywhere and one that
    starts with ``*`` may match at any depth (fnmatch's ``*`` crosses folders): both stay as
    they are. Otherwise the leading parts that name ``root``'s folders are dropped (a last part
    that starts with ``*`` covers the deeper ones), and a glob for another folder than
    ``root``'s is left out."""
    try:
        parts = Path(os.path.realpath(root)).relative_to(os.path.realpath(base)).parts
    except ValueError:
        return list(patterns)  # not under the pyproject's folder: nothing to rebase against
    rebased = []
    for pattern in patterns:
        trimmed = pattern.strip("/")
        if not parts or "/" not in trimmed or trimmed.startswith("*"):
            rebased.append(pattern)
            continue
        segments = trimmed.split("/")
        depth = 0
        while (
            depth < len(parts)
            and depth < len(segments) - 1
            and fnmatch.fnmatchcase(parts[depth], segments[depth])
        ):
            depth += 1
        if depth == len(parts):
            rebased.append("/".join(segments[depth:]))
        elif depth == len(segments) - 1 and segments[-1].startswith("*"):
            rebased.append(segments[-1])  # app/* from app/deep: * spans deep/ too
    return rebased


def _table(path: Path) -> dict[str, Any] | None:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pooldoctor")
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", "fix its permissions or encoding") from exc
    if table is not None and not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.pooldoctor] must be a table")
    return table


def _validate(path: Path, table: dict[str, Any]) -> None:
    """An unknown key is a typo that would quietly turn a CI gate into a no-op: refuse it."""
    known = ", ".join(sorted(KEYS))
    for key, value in table.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"{path}: [tool.pooldoctor] has an unknown key {key!r}",
                f"{hint}known keys: {known}",
            )
        if KEYS[key] == STRINGS:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:  # max-file-size: its text is parsed by scan, which says what a size looks like
            ok = isinstance(value, str | int) and not isinstance(value, bool)
        if not ok:
            raise UsageError(
                f"{path}: [tool.pooldoctor] {key} = {value!r} is not {KEYS[key]}",
                f"for example {_EXAMPLES[key]}",
            )


_EXAMPLES = {
    "wrappers": 'wrappers = ["mysite.celeryapp:async_task"]',
    "select": 'select = ["PD3"]',
    "ignore": 'ignore = ["PD101"]',
    "exclude": 'exclude = ["legacy/*", "migrations"]',
    "max-file-size": 'max-file-size = "2M"',
}
