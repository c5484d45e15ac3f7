"""The inspect tests' scratch database, for the live fleet of tests/metrics."""

from __future__ import annotations

from inspection.inspect_fleet import inspect_database_url

__all__ = ["inspect_database_url"]
