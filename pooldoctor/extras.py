"""The optional dependencies (pyproject.toml's extras) and the one line a command gives when the
one it needs is missing.

pooldoctor is installed into the project's own environment, so Celery, httpx and the web servers
are extras: ``scan``, ``report`` and ``check`` (without ``--url``) need none of them.
"""

from __future__ import annotations

import importlib.util

from pooldoctor.errors import MissingExtraError


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``--help`` and ``scan`` stay
    light)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, a half-removed package
        return False


def require(module: str, extra: str, needed_by: str) -> None:
    """:class:`MissingExtraError` (exit 3) naming the extra to install, unless ``module`` is
    installed."""
    if not installed(module):
        raise MissingExtraError(
            f"{needed_by} needs {module}, which is not installed",
            f"pip install 'pooldoctor[{extra}]'",
        )
