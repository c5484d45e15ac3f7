"""PD404 on real prefork workers: the cause it states is the installed Celery's.

From Celery 5.6 the Django fix-up calls close_pool() before and after every prefork task: each
task builds a new pool and opens a connection (PD404, blamed on the fix-up). Before 5.6 each child
warms its pool up once and reuses it: no PD404, however many connections the warm-up opened.
"""

from __future__ import annotations

import celery

from .sim import FIXUP_CLOSES_POOL, Sim

SUBJECT = "async-to-sync"


def test_pd404_names_the_installed_celerys_cause(leaky_prefork: Sim) -> None:
    # GIVEN async-to-sync (a clean way to run the ORM) on prefork -c 2, 12 tasks
    result = leaky_prefork.result(SUBJECT)
    found = [f for f in leaky_prefork.report["findings"]
             if f["code"] == "PD404" and f["subject"] == SUBJECT]  # fmt: skip
    opened = [w["connections_opened"] for w in result["workers"]]
    if FIXUP_CLOSES_POOL:
        # THEN (Celery >= 5.6) a connection per task past warm-up, blamed on the fix-up
        (finding,) = found
        assert (
            f"Celery {celery.__version__}'s Django fix-up calls close_pool() before and "
            in (finding["message"])
        ), finding
        assert "past the pool's warm-up" in finding["message"]
        assert all(w["connections_opened"] >= w["tasks"] for w in result["workers"]), opened
    else:
        # THEN (Celery < 5.6) the children's pools warmed up and were reused: no PD404
        assert found == [], found
        assert all(n <= 4 for n in opened), opened
