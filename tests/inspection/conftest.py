"""Fixtures for the inspect tests: real workers of tests/projects/inspectproj (see inspect_fleet).

(The directory is ``inspection``, not ``inspect``: a test package of that name would shadow the
standard library's module.)
"""

from __future__ import annotations

from .inspect_fleet import broker, fleet, inspect_database_url

__all__ = ["broker", "fleet", "inspect_database_url"]
