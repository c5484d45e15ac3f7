"""The change as a unified diff against the project's file (``git apply``/``patch -p1`` ready)."""

from __future__ import annotations

import difflib

from pooldoctor.core.fixes.patch import Patch


def unified(patch: Patch) -> str:
    """``--- a/PATH`` / ``+++ b/PATH``, PATH relative to the project directory."""
    lines = difflib.unified_diff(
        patch.original_file.splitlines(keepends=True),
        patch.patched_file.splitlines(keepends=True),
        fromfile=f"a/{patch.source.relative}",
        tofile=f"b/{patch.source.relative}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
