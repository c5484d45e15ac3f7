"""The ledger's own bookkeeping, without a database: what the garbage collector may do to it."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from pooldoctor.core.census import Ledger

OPEN = 0  # libpq's CONNECTION_OK


def test_a_finalizer_running_while_the_ledger_holds_its_lock_does_not_deadlock() -> None:
    # GIVEN the ledger's lock held by this thread, as during any of its own allocations
    ledger = Ledger("default")
    finished = threading.Event()

    def collect_inside_the_lock() -> None:
        with ledger._lock:
            # WHEN the garbage collector finalizes a connection that died checked out, right here
            ledger._on_death(12345, SimpleNamespace(status=OPEN))
        finished.set()

    worker = threading.Thread(target=collect_inside_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=10)
    # THEN it returns, and the loss is counted once the ledger is read
    assert finished.is_set(), "the finalizer deadlocked on the ledger's lock"
    assert ledger.lost_dead == 1


def test_a_connection_closed_before_it_died_is_not_lost() -> None:
    ledger = Ledger("default")
    ledger._on_death(1, SimpleNamespace(status=1))  # CONNECTION_BAD: closed, or returned
    assert ledger.lost_dead == 0


def test_without_a_pool_a_return_is_a_connection_seen_closed() -> None:
    # GIVEN no pool: Django gives a connection back by closing it
    ledger = Ledger("default")
    ledger._on_death(1, SimpleNamespace(status=1))  # died closed
    ledger._on_death(2, SimpleNamespace(status=OPEN))  # died open: lost, not returned
    # THEN one return is counted, measured from the connections themselves
    assert ledger.returned(None) == 1
    assert ledger.lost_dead == 1
