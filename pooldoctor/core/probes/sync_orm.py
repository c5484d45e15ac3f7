"""A plain sync Celery task using the ORM: no async code at all.

What most projects' tasks are. In a worker, Celery's Django fix-up closes the task's connection
around it (``celery/fixups/django.py``, ``on_task_prerun``/``on_task_postrun``); what it cannot
undo is a connection, or a pool, that the prefork child inherited from its parent: two children
then talk over one socket and read each other's results. This mode gives a project without async
code a subject whose fork behaviour ``simulate`` measures on the project's own Celery app.
"""

from __future__ import annotations

from pooldoctor.core.probes import SyncTask, register


@register(__name__, order=5, sync=True, worker_only=True)
def wrap(task: SyncTask) -> SyncTask:
    return task
