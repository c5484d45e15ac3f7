"""The dotted name a scanned file is imported by, for hints such as ``confirm with: pooldoctor
check --wrapper mysite.celeryapp:run``: relative to the project's root, wherever scan ran from.

The root is the nearest folder upward from the file that holds ``manage.py`` (Django's
``startproject`` layout; check and simulate run from there), else the folder holding the
settings package (a package with ``settings.py`` or a ``settings`` package), else the scanned
folder when the file is under it, else the folder above the file's outermost package. The
search stops at the repository's top (``.git``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pooldoctor.scan.source import SourceFile


def import_name(source: SourceFile) -> str | None:
    """``mysite.celeryapp`` for ``…/project/mysite/celeryapp.py``; None when the path relative to
    the root is not a dotted module name (a folder named ``my-app``)."""
    absolute = Path(os.path.abspath(source.path))
    root = project_root(str(absolute.parent))
    if root is not None:
        parts = list(absolute.relative_to(root).with_suffix("").parts)
    elif not Path(source.relative).is_absolute() and not source.relative.startswith(".."):
        parts = list(Path(source.relative).with_suffix("").parts)  # under the scanned folder
    else:
        parts = [*_packages(absolute.parent), absolute.stem]
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


@functools.cache
def project_root(folder: str) -> Path | None:
    """The folder with ``manage.py``, else above the settings package, upward from ``folder``."""
    start = Path(folder)
    upward = [start]
    for parent in start.parents:
        if (upward[-1] / ".git").exists():
            break
        upward.append(parent)
    for candidate in upward:
        if (candidate / "manage.py").is_file():
            return candidate
    for candidate in upward:
        if (candidate / "__init__.py").is_file() and (
            (candidate / "settings.py").is_file() or (candidate / "settings").is_dir()
        ):
            return candidate.parent
    return None


def _packages(folder: Path) -> list[str]:
    """The names of the packages ``folder`` is in, outermost first (``folder`` included)."""
    names: list[str] = []
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        names.insert(0, folder.name)
        folder = folder.parent
    return names
