"""``[tool.pooldoctor]`` in the project's pyproject.toml: read once, every failure one line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pooldoctor.errors import UsageError


def tool_config(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The pyproject.toml of ``directory`` and its ``[tool.pooldoctor]`` table (empty when there
    is no such file or table)."""
    path = directory / "pyproject.toml"
    if not path.is_file():
        return path, {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pooldoctor")
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", "fix its permissions or encoding") from exc
    if table is None:
        return path, {}
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.pooldoctor] must be a table")
    return path, table
