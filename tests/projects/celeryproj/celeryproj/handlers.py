"""The project's own fix for a pool opened before the fork: each prefork child discards it."""

import contextlib
from typing import Any

from celery.signals import worker_process_init
from django.db import connections


@worker_process_init.connect
def discard_inherited_pool(**kwargs: Any) -> None:
    # The pool (and its sockets) came from the parent: every child would share them.
    for alias in connections:
        with contextlib.suppress(AttributeError, KeyError):  # not PostgreSQL, or no pool open
            connections[alias].close_pool()
