"""A fix that fits the project's wrapper, applied to a copy of its source and measured.

``check`` measures the built-in modes and the project's wrappers in one run. For a wrapper that
leaks or pins, this package finds the wrapper's own source (:mod:`.source`), recognises how it
runs the task (:mod:`.shapes`: ``asyncio.run``/``run_until_complete``, ``async_to_sync`` without
cleanup, a ``ThreadSensitiveContext`` with no close on its thread), rewrites the smallest part of
it into a pattern that measured clean as a built-in mode in the same run (:mod:`.patch`), shows
the change as a unified diff against the project's file (:mod:`.diff`), and measures the patched
wrapper in one more subject process (:mod:`.prove`; :mod:`.load` loads it there without
re-running the module). The project's files are never written.
"""

from __future__ import annotations


class CannotPatch(Exception):
    """Why pooldoctor cannot rewrite a wrapper, in words a user can act on."""
